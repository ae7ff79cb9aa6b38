"""Post-processing steps (l2, power, pcaw) and descriptor fusion."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.pipelines import best_per_id, turned
from lookalike.features.base import Extractor
from lookalike.features.fusion import Fusion
from lookalike.postprocess import (L2, POSTPROCESS, PartsWhitening, PCAWhitening, Power,
                                   make_step)


def test_registry_names():
    assert {"l2", "power", "pcaw"} <= set(POSTPROCESS.names())
    assert isinstance(make_step("pcaw"), PCAWhitening)
    assert make_step({"step": "power", "alpha": 0.25}).alpha == 0.25


def test_l2_rows_and_zero_row():
    out = L2().apply(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_power_is_signed_square_root_then_l2():
    out = Power().apply(np.array([[9.0, -16.0]]))
    np.testing.assert_allclose(out, [[3 / 5, -4 / 5]], rtol=1e-6)


def test_pcaw_whitens_training_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 6)) @ np.diag([10, 5, 2, 1, 0.5, 0.1]) + 3.0
    w = PCAWhitening(eps=0.0).fit(x)
    z = (x - w.mean) @ w.proj
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(6), atol=1e-3)
    assert w.apply(x).shape == (2000, 6)
    np.testing.assert_allclose(np.linalg.norm(w.apply(x), axis=1), 1.0, rtol=1e-5)


def test_pcaw_reduces_dimension_to_top_axes():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 5)) * np.array([0.1, 9.0, 0.2, 4.0, 0.3])
    w = PCAWhitening(dim=2).fit(x)
    assert w.apply(x).shape == (500, 2) and w.dim_out(5) == 2
    # the two kept axes are the high-variance coordinates 1 and 3
    assert set(np.argmax(np.abs(w.proj), axis=0)) == {1, 3}


def test_pcaw_with_fewer_samples_than_dimensions():
    x = np.random.default_rng(2).standard_normal((10, 50))
    w = PCAWhitening().fit(x)
    assert w.dim_out(50) == 50 and w.apply(x).shape == (10, 50)
    assert (w.proj[:, 9:] == 0).all() and (w.proj[:, :9] != 0).any()  # rank of 10 centred samples


def test_pcaw_save_load_roundtrip(tmp_path):
    x = np.random.default_rng(3).standard_normal((100, 8))
    w = PCAWhitening(dim=4).fit(x)
    w.save(tmp_path)
    w2 = PCAWhitening().load(tmp_path)
    np.testing.assert_array_equal(w.apply(x), w2.apply(x))
    assert w2.config()["dim"] == 4


def test_pcaw_needs_fit():
    w = PCAWhitening()
    assert not w.fitted
    with pytest.raises(RuntimeError):
        w.apply(np.ones((1, 3)))


class _Const:
    metric = "ip"

    def __init__(self, name, rows):
        self.name, self.rows, self.dim = name, np.asarray(rows, np.float32), len(rows[0])

    def describe(self, images):
        return self.rows[: len(images)]

    def config(self):
        return {"name": self.name}


def test_fusion_similarity_is_weighted_mean():
    a = _Const("a", [[1, 0], [0, 1]])
    b = _Const("b", [[3, 4, 0], [3, 4, 0]])
    f = Fusion(a, b, weights=(1.0, 2.0))
    v = f.describe([None, None])
    assert v.shape == (2, 5) and f.dim == 5 and f.name == "fusion-a-b"
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    # sim_a = 0, sim_b = 1 -> (1·0 + 4·1) / 5
    assert float(v[0] @ v[1]) == pytest.approx(0.8, rel=1e-6)
    assert f.config()["weights"] == [1.0, 2.0]


def test_parts_whitening_whitens_each_block_on_its_own(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 6)) @ np.diag([50, 20, 5, 1, 1, 1])  # strong axes
    b = rng.standard_normal((500, 4)) * 0.01  # weak part: joint whitening would let `a` dominate
    x = np.hstack([a, b])
    step = make_step({"step": "pcaw-parts", "parts": [6, 4], "dim": 3, "eps": 0.0}).fit(x)
    assert isinstance(step, PartsWhitening) and step.dim_out(10) == 6
    want = np.hstack([PCAWhitening(3, 0.0).fit(a).apply(a), PCAWhitening(3, 0.0).fit(b).apply(b)])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    out = step.apply(x)
    np.testing.assert_allclose(out, want, atol=1e-5)
    # each part ends at unit norm before the concatenation: equal weight
    np.testing.assert_allclose(np.linalg.norm(out[:, :3], axis=1), np.sqrt(0.5), atol=1e-5)
    step.save(tmp_path)
    again = PartsWhitening([6, 4], 3, 0.0).load(tmp_path)
    np.testing.assert_allclose(again.apply(x), out, atol=1e-6)
    with pytest.raises(ValueError):
        step.apply(x[:, :9])
    assert not PartsWhitening([6, 4]).fitted


def test_best_per_id_keeps_each_ids_highest_score():
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.6]], np.float32)
    ids = np.array([[1, 2, 3], [2, 4, 1]], np.int64)
    s, i = best_per_id(scores, ids, 5)
    assert i.tolist() == [[1, 2, 4, 3, -1]]
    np.testing.assert_allclose(s[0, :4], [0.9, 0.8, 0.7, 0.1])
    assert s[0, 4] == -np.inf


def test_turned_gives_upright_then_quarter_turns():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    views = turned(img)
    assert [v.shape for v in views] == [(2, 3, 3), (3, 2, 3), (3, 2, 3)]
    np.testing.assert_array_equal(views[1], np.rot90(img, 1))
    np.testing.assert_array_equal(views[2], np.rot90(img, -1))


def test_views_are_reranked_once_from_the_best_view():
    """With re-rank steps, the views' merged list is re-ranked once, from the view that matched
    best: re-ranked scores of different views are not comparable."""
    from lookalike.store.flat import FlatStore
    from lookalike.pipelines import Pipeline

    class Recorder:
        name = "rec"
        calls: list = []

        def rerank(self, q, s, i, store, context=None):
            self.calls.append((q.copy(), i.copy()))
            return s[:, ::-1].copy(), i[:, ::-1].copy()  # reverse: visible in the output

    rng = np.random.default_rng(0)
    db = rng.normal(size=(6, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    store = FlatStore(8, "ip")
    store.add(np.arange(10, 16, dtype=np.int64), db)
    views = np.stack([db[0] + db[1], db[3], db[4] + db[5]]).astype(np.float32)
    views /= np.linalg.norm(views, axis=1, keepdims=True)
    pipe = Pipeline("t", extractor=Extractor(), steps=[Recorder()], shortlist=4)
    s, i = pipe.search_views(store, views, 3)
    (q, given), = Recorder.calls  # one call, from view 1 (it matches id 13 exactly)
    np.testing.assert_allclose(q[0], views[1])
    merged_s, merged_i = best_per_id(*store.search(views, 4), 6)
    assert given[0].tolist() == merged_i[0].tolist() and given[0, 0] == 13
    assert i[0].tolist() == merged_i[0][::-1][:3].tolist()
    plain = Pipeline("t", extractor=Extractor())
    assert plain.search_views(store, views, 3)[1][0].tolist() == merged_i[0, :3].tolist()


def test_whitening_files_are_float16_only_when_lossless(tmp_path):
    x = np.random.default_rng(3).normal(size=(40, 10)).astype(np.float32)
    step = PartsWhitening([6, 4], 3).fit(x)
    step.save(tmp_path / "exact")
    with np.load(tmp_path / "exact" / step.FILE) as z:
        assert z["proj0"].dtype == np.float32  # learned values do not fit float16 exactly
    for w in step.whitenings:
        w.proj = w.proj.astype(np.float16).astype(np.float32)
    step.save(tmp_path / "half")
    with np.load(tmp_path / "half" / step.FILE) as z:
        assert z["proj0"].dtype == np.float16
    again = PartsWhitening([6, 4], 3).load(tmp_path / "half")
    assert again.whitenings[0].proj.dtype == np.float32
    np.testing.assert_array_equal(again.apply(x), step.apply(x))
