"""The ``auto`` store tunes its search knobs to a recall target, records the choice, and reuses it."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_photo
from lookalike.errors import BadInputError
from lookalike.store.factory import auto_options, auto_spec, choose, load_store, make_store
from lookalike.store.ivfpq import IVFPQStore
from lookalike.store.rows import read_manifest
from lookalike.store.tuning import _recall, _recalls, lower_bound, tune

faiss.omp_set_num_threads(1)


def clustered(n: int, dim: int = 32, clusters: int = 60, seed: int = 0) -> np.ndarray:
    """Unit vectors around a shared direction, in small clusters, each point with its own noise."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=dim)
    c = rng.normal(size=(clusters, dim))
    centres = 0.68 * g / np.linalg.norm(g) + 0.49 * c / np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed + 1)
    x = centres[rng.integers(0, clusters, n)] + rng.uniform(0.05, 1.2, (n, 1)) / np.sqrt(dim) * \
        rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def true_recall(store, x: np.ndarray, qids: np.ndarray, k: int = 10, lower: bool = False) -> float:
    """Recall@k of the store's answers for rows ``qids`` of ``x`` (ids = row numbers), by numpy;
    with ``lower``, the mean less one standard error (what the tuner holds a setting to)."""
    truth = np.argsort(-(x[qids] @ x.T), axis=1, kind="stable")[:, :k + 1]
    got = store.search(x[qids], k + 1)[1]
    return lower_bound(_recalls(got, truth, qids, k)) if lower else _recall(got, truth, qids, k)


@pytest.mark.parametrize("spec", ["IVF32,Flat?train_at=1000&nprobe=32",
                                  "IVF32,PQ8?train_at=1000&nprobe=32&rescore=16",
                                  "hnsw?ef_search=512"])
def test_a_tiny_store_reaches_its_recall_target_with_the_least_effort(spec):
    x = clustered(3000)
    store = make_store(spec, 32)
    store.add(np.arange(len(x)), x)
    t = tune(store, target=0.95, sample=300, timed=20)
    assert t is not None and t["reached"] and t["recall"] >= t["recall_lower"] >= 0.95 and t["vectors"] == 3000
    knob, value = next(iter(t["params"].items()))
    assert getattr(store, knob) == value
    qids = np.random.default_rng(0).choice(len(x), 300, replace=False)
    assert true_recall(store, x, qids, lower=True) >= 0.95  # measured independently of the store's scan
    if value > 1 and knob == "nprobe":  # the least setting that reaches it: one less falls short
        setattr(store, knob, value - 1)
        assert true_recall(store, x, np.sort(qids), lower=True) < 0.95 or t["params"].get("rescore", 0) > 1


def test_nothing_to_tune_on_exact_stores():
    x = clustered(500)
    flat = make_store("flat", 32)
    flat.add(np.arange(500), x)
    untrained = make_store("IVF32,Flat?train_at=1000", 32)
    untrained.add(np.arange(500), x)
    assert tune(flat) is None and tune(untrained) is None  # both scan every vector exactly


def test_ivf_flat_holds_its_vectors_once(tmp_path):
    x = clustered(3000)
    store = make_store("IVF32,Flat?train_at=1000&nprobe=4", 32)
    store.add(np.arange(500), x[:500])
    assert store._vec_path.stat().st_size == 500 * 32 * 4  # before training: a file, scanned exactly
    tmp_dir = store._vec_path.parent
    store.add(np.arange(500, 3000), x[500:])
    assert store.vectors_in_lists and store._vec_path is None and not tmp_dir.exists()
    np.testing.assert_allclose(store.reconstruct(np.array([7, 2999])), x[[7, 2999]], atol=1e-6)
    store.save(tmp_path / "s")
    assert set(read_manifest(tmp_path / "s")["files"]) == {"index", "ids", "alive", "mean"}
    again = load_store(tmp_path / "s")
    assert again.vectors_in_lists and len(again) == 3000
    np.testing.assert_array_equal(again.search(x[:50], 10)[1], store.search(x[:50], 10)[1])
    again.remove(np.arange(0, 3000, 3))
    kept = again.search(x[1:60:3], 10)
    assert again.compact() == 1000 and again._rows.n_rows == 2000
    np.testing.assert_array_equal(again.search(x[1:60:3], 10)[1], kept[1])  # rows renumbered in place
    np.testing.assert_allclose(again.reconstruct(np.array([1, 2999])), x[[1, 2999]], atol=1e-6)
    _, exact_ids = again.exact_search(x[1:60:3], 10)
    live = np.setdiff1d(np.arange(3000), np.arange(0, 3000, 3))
    want = live[np.argsort(-(x[1:60:3] @ x[live].T), axis=1, kind="stable")[:, :10]]
    np.testing.assert_array_equal(np.sort(exact_ids, 1), np.sort(want, 1))


def test_an_ivf_flat_saved_with_a_vector_file_still_opens(tmp_path):
    """Stores saved before the vectors lived only in the lists carried a file: it is left unread
    and the next save drops it."""
    x = clustered(2000)
    store = make_store("IVF16,Flat?train_at=1000&nprobe=16", 32)
    store.add(np.arange(2000), x)
    store.save(tmp_path / "s")
    manifest = read_manifest(tmp_path / "s")
    (tmp_path / "s" / "vectors-old").write_bytes(x.tobytes())  # what the older save also wrote
    manifest["files"]["vectors"] = "vectors-old"
    del manifest["vectors_in_lists"], manifest["tuning"]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    old = load_store(tmp_path / "s")
    assert old.vectors_in_lists and old.tuning is None
    np.testing.assert_allclose(old.reconstruct(np.array([3])), x[[3]], atol=1e-6)
    old.add(np.array([5000]), x[:1])
    old.save(tmp_path / "s")
    assert not (tmp_path / "s" / "vectors-old").exists() and len(load_store(tmp_path / "s")) == 2001


def test_auto_spec_options():
    assert auto_spec(None, recall=0.99) == "auto?recall=0.99"
    assert auto_spec("auto?recall=0.99", memory_mb=2048) == "auto?recall=0.99&memory_mb=2048"
    assert auto_spec("auto?recall=0.9", recall=0.98) == "auto"  # the default is not written
    assert auto_options("auto?recall=0.9&memory_mb=100") == {"recall": 0.9, "memory_mb": 100}
    assert auto_options("ivfflat") is None
    for bad in ("auto?recall=1.5", "auto?recall=0", "auto?memory_mb=-1", "auto?recall=high"):
        with pytest.raises(BadInputError):
            auto_options(bad)
    with pytest.raises(BadInputError):
        auto_spec("hnsw", recall=0.9)
    assert choose(1_000_000, 1280) == "ivfflat"  # the float32 vectors fit the default budget
    low = make_store("auto?memory_mb=1000", 1280, n_expected=1_000_000)
    assert isinstance(low, IVFPQStore) and "PQ" in low.factory


@pytest.fixture
def many_photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(60):
        Image.fromarray(synthetic_photo(300 + i, size=(64, 48))).save(d / f"p{i:02d}.png")
    return d


def test_the_tuned_setting_is_recorded_reused_on_reopen_and_redone_on_growth(tmp_path, many_photos,
                                                                             monkeypatch):
    import lookalike
    from lookalike.engine import stores
    from lookalike.store import factory

    monkeypatch.setattr(factory, "EXACT_UP_TO", 10)  # small collections stand in for large ones
    monkeypatch.setattr(factory, "n_lists", lambda n: 4)
    calls = []
    real_tune = stores.tune
    monkeypatch.setattr(stores, "tune", lambda *a, **kw: calls.append(a) or real_tune(*a, **kw))
    photos = sorted(many_photos.iterdir())
    with lookalike.open(tmp_path / "idx", pipeline="color", store="auto?train_at=20", recall=0.9) as idx:
        idx.add(photos[:30])
        assert isinstance(idx.store, IVFPQStore) and idx.store.vectors_in_lists
        first = idx.store.tuning
        assert len(calls) == 1 and first["target"] == 0.9 and first["recall"] >= 0.9 and first["vectors"] == 30
        assert idx.info()["store_tuning"] == first and idx.info()["store_spec"] == "auto?recall=0.9&train_at=20"
        idx.add(photos[:30])  # nothing new: no tuning
        assert len(calls) == 1
    with lookalike.open(tmp_path / "idx") as again:  # reopened: the saved choice, not tuned again
        assert again.store.tuning == first and again.store.nprobe == first["params"]["nprobe"]
        again.search(photos[3], k=5)
        again.add(photos[30:40])  # 40 < 2 x 30: kept
        assert len(calls) == 1 and again.store.tuning == first
        again.add(photos[40:])  # 60 = 2 x 30: tuned again, through the writer
        assert len(calls) == 2 and again.store.tuning["vectors"] == 60
    with lookalike.open(tmp_path / "idx", recall=0.95) as stricter:  # a new target: same store, re-tuned
        assert len(calls) == 3 and stricter.store.tuning["target"] == 0.95
        assert stricter.info()["store_spec"] == "auto?recall=0.95&train_at=20"
    with lookalike.open(tmp_path / "idx", readonly=True) as ro:
        assert ro.store.tuning["target"] == 0.95 and len(calls) == 3


def test_info_shows_the_tuning(tmp_path, many_photos, monkeypatch):
    from typer.testing import CliRunner

    from lookalike.cli import app
    from lookalike.store import factory

    monkeypatch.setattr(factory, "EXACT_UP_TO", 10)
    monkeypatch.setattr(factory, "n_lists", lambda n: 4)
    idx = str(tmp_path / "idx")
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(many_photos), "--index", idx, "-p", "color", "--quiet",
                            "--store", "auto?train_at=20", "--recall", "0.9"])
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(app, ["info", "--index", idx, "--json"]).stdout)
    assert info["store_tuning"]["target"] == 0.9 and "nprobe" in info["store_tuning"]["params"]
    assert "search tuning" in runner.invoke(app, ["info", "--index", idx]).stdout
    r = runner.invoke(app, ["index", str(many_photos), "--index", idx, "--store", "flat", "--recall", "0.9"])
    assert r.exit_code == 1 and "auto" in r.output


def test_recall_is_held_to_its_lower_bound():
    all_or_nothing = np.array([1.0] * 97 + [0.0] * 3)  # mean 0.97, a few queries missing everything
    assert lower_bound(all_or_nothing) < 0.97 - 0.01
    assert lower_bound(np.ones(50)) == 1.0
