"""Post-processing steps (l2, power, pcaw) and descriptor fusion."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.postprocess import L2, POSTPROCESS, Fusion, PCAWhitening, Power, apply_steps, make_step


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


def test_apply_steps_chain():
    x = np.array([[4.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(apply_steps([Power(), L2()], x), [[1, 0], [2**-0.5, 2**-0.5]], rtol=1e-6)


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
