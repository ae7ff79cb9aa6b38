"""The same contract tests for every vector store: flat, HNSW, IVF-PQ and Milvus Lite."""
from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import faiss
import numpy as np
import pytest

from lookalike.store.factory import choose, ivfpq_factory, load_store, make_store
from lookalike.store.flat import FlatStore
from lookalike.store.hnsw import HNSWStore
from lookalike.store.ivfpq import IVFPQStore

DIM = 16
faiss.omp_set_num_threads(1)  # tiny data: threads only add spin-waiting on a busy machine
HAS_MILVUS = importlib.util.find_spec("milvus_lite") is not None and \
    importlib.util.find_spec("pymilvus") is not None


def data(n: int = 400, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors: 20 centres with small spread."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, DIM))
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def milvus_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("milvus") / "m.db"


def new_store(kind: str, metric: str, tmp: Path, milvus_db: Path):
    if kind == "flat":
        return make_store("flat", DIM, metric)
    if kind == "hnsw":
        return make_store("hnsw?ef_search=64", DIM, metric)
    if kind == "ivfpq":
        return make_store("IVF8,PQ8x4?nprobe=8&rescore=10", DIM, metric)
    if not HAS_MILVUS:
        pytest.skip("milvus-lite is not installed")
    return make_store(f"milvus://{milvus_db}?collection=c{uuid.uuid4().hex[:8]}", DIM, metric)


KINDS = ["flat", "hnsw", "ivfpq", "milvus"]


def exact(x: np.ndarray, q: np.ndarray, k: int, metric: str) -> np.ndarray:
    s = q @ x.T if metric == "ip" else -((q[:, None, :] - x[None]) ** 2).sum(-1)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("kind", KINDS)
def test_search_finds_true_neighbours_with_exact_scores(kind, metric, tmp_path, milvus_db):
    x = data()
    ids = np.arange(1000, 1000 + len(x))
    store = new_store(kind, metric, tmp_path, milvus_db)
    store.add(ids, x)
    assert len(store) == len(x)
    q = x[:20] + 0.01
    scores, got = store.search(q, 10)
    truth = ids[exact(x, q, 10, metric)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
    assert recall >= (1.0 if kind in ("flat", "milvus") else 0.9)
    # scores are exact similarities (higher is better) for every store, IVF-PQ re-scores from disk
    v = x[got - 1000]
    want = np.einsum("qkd,qd->qk", v, q) if metric == "ip" else -((v - q[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


@pytest.mark.parametrize("kind", KINDS)
def test_remove_reconstruct_ids_and_padding(kind, tmp_path, milvus_db):
    x = data(300)
    ids = np.arange(300) * 7
    store = new_store(kind, "ip", tmp_path, milvus_db)
    store.add(ids, x)
    gone = ids[:150]
    assert store.remove(np.concatenate([gone, [999_999]])) == 150
    assert store.remove(gone[:5]) == 0
    assert len(store) == 150
    assert set(store.ids().tolist()) == set(ids[150:].tolist())
    _, got = store.search(x[:150], 20)  # the removed vectors' own queries
    assert not np.isin(got, gone).any()
    assert (got >= 0).all()  # still k live results
    np.testing.assert_allclose(store.reconstruct(ids[[200, 151]]), x[[200, 151]], atol=1e-6)
    with pytest.raises(KeyError):
        store.reconstruct(ids[:1])
    # re-adding a removed id gives the new vector
    store.add(ids[:1], x[299:300])
    s, got = store.search(x[299:300], 2)
    assert set(got[0].tolist()) == {ids[0], ids[299]}
    # asking for more than stored pads with -1 / -inf
    small = new_store(kind, "ip", tmp_path, milvus_db)
    small.train(x)  # IVF-PQ learns its quantisers first; a no-op elsewhere
    small.add(np.array([5, 6]), x[:2])
    s, got = small.search(x[:1], 4)
    assert got[0].tolist() == [5, 6, -1, -1]
    assert np.isneginf(s[0, 2:]).all()


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip_and_keep_adding(kind, tmp_path, milvus_db):
    x = data(300)
    store = new_store(kind, "ip", tmp_path, milvus_db)
    store.add(np.arange(250), x[:250])
    store.remove(np.arange(10))
    before = store.search(x[:30], 5)
    where = tmp_path / "store"
    store.save(where)
    store.save(where)  # saving twice to the same place is fine
    back = load_store(where)
    assert type(back) is type(store) and len(back) == 240
    after = back.search(x[:30], 5)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-5)
    back.add(np.arange(250, 300), x[250:])
    assert len(back) == 290
    _, got = back.search(x[260:261], 1)
    assert got[0, 0] == 260


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_compact_drops_tombstones_and_keeps_answers(kind, tmp_path, milvus_db):
    x = data(400)
    store = new_store(kind, "ip", tmp_path, milvus_db)
    store.add(np.arange(400), x)
    store.remove(np.arange(0, 400, 2))
    before = store.search(x[1::2][:40], 5)
    assert store.compact() == 200
    assert store._rows.n_rows == 200 and store.compact() == 0
    after = store.search(x[1::2][:40], 5)
    assert np.mean(after[1] == before[1]) >= 0.9
    np.testing.assert_allclose(store.reconstruct(np.array([1, 399])), x[[1, 399]], atol=1e-6)


def test_ivfpq_keeps_few_bytes_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 64)).astype(np.float32)
    store = IVFPQStore(64, "ip", "IVF16,PQ8x4", storage_dir=tmp_path)
    store.add(np.arange(1000), x)
    per_vec = store.memory_bytes() / 1000
    assert per_vec < 64 * 4 / 4  # far below the 256 bytes of a float32 row
    assert (tmp_path / store._vec_path.name).stat().st_size == 1000 * 64 * 4


def shared_direction_data(n: int, dim: int = 256, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    """All-positive-like vectors: a common direction, many small clusters, each point its own noise."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=dim)
    c = rng.normal(size=(clusters, dim))
    centres = 0.68 * g / np.linalg.norm(g) + 0.49 * c / np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed + 1)
    noise = rng.uniform(0.05, 1.2, (n, 1)) / np.sqrt(dim)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_lists_follow_clusters_not_the_shared_direction(tmp_path):
    x, q = shared_direction_data(20_000), shared_direction_data(200, seed=1)
    truth = exact(x, q, 10, "ip")
    imbalance = {}
    for center in (0, 1):
        store = make_store(f"IVF256,Flat?nprobe=256&rescore=0&center={center}&max_train=4000", 256)
        store.add(np.arange(len(x)), x)
        imbalance[center] = faiss.extract_index_ivf(store._index).invlists.imbalance_factor()
        scores, got = store.search(q, 10)  # every list probed: exact answers either way
        np.testing.assert_array_equal(np.sort(got, 1), np.sort(truth, 1))
        # inner products come back exact (the centring undone)
        np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, got, 1), rtol=1e-4, atol=1e-5)
    assert imbalance[1] < 1.5 and imbalance[0] > 3  # raw k-means piles noisy vectors into few lists
    store.nprobe = 16
    _, got = store.search(q, 10)
    store.save(tmp_path / "s")
    again = load_store(tmp_path / "s")
    np.testing.assert_array_equal(again.search(q, 10)[1], got)
    again.remove(got[:, 0])
    kept = again.search(q, 10)[1]
    assert not np.isin(got[:, 0], kept).any()
    assert again.compact() == len(np.unique(got[:, 0]))
    np.testing.assert_array_equal(again.search(q, 10)[1], kept)


def test_auto_choice_and_spec_strings(tmp_path):
    assert choose(10_000, 1280) == "flat"
    assert choose(500_000, 1280, memory_budget_mb=8000) == "ivfflat"
    assert choose(1_000_000, 1280, memory_budget_mb=2000) == "ivfpq"
    assert isinstance(make_store("auto", 32, n_expected=100), FlatStore)
    mid = make_store("auto", 32, n_expected=100_000)
    assert isinstance(mid, IVFPQStore) and mid.factory == "IVF1024,Flat" and mid.rescore == 0
    big = make_store("auto", 1280, n_expected=2_000_000, memory_budget_mb=1000)
    assert isinstance(big, IVFPQStore) and big.factory == ivfpq_factory(1280, 2_000_000)
    assert ivfpq_factory(1280, 1_000_000) == "IVF4096,PQ128"
    s = make_store("OPQ8,IVF16,PQ8?nprobe=4", 32)
    assert isinstance(s, IVFPQStore) and s.nprobe == 4 and s.factory == "OPQ8,IVF16,PQ8"
    assert isinstance(make_store("HNSW16", 32), HNSWStore)
    assert isinstance(make_store("Flat", 32), FlatStore)
    with pytest.raises(ValueError):
        make_store("nonsense", 32)


def test_flat_store_roundtrip_through_load_store(tmp_path):
    x = data(50)
    s = FlatStore(DIM)
    s.add(np.arange(50), x)
    s.save(tmp_path / "flat.faiss")
    assert isinstance(load_store(tmp_path / "flat.faiss"), FlatStore)


def test_milvus_spec_parsing(monkeypatch):
    import lookalike.store.milvus as mv

    seen = []
    monkeypatch.setattr(mv, "MilvusStore", lambda dim, metric, **kw: seen.append((dim, metric, kw)))
    monkeypatch.setenv("MILVUS_TOKEN", "root:Milvus")
    make_store("milvus://127.0.0.1:19530/photos", 8, "l2")
    make_store("milvus:///data/m.db?collection=c1", 8)
    assert seen[0] == (8, "l2", {"uri": "http://127.0.0.1:19530", "collection": "photos",
                                 "token": "root:Milvus"})
    assert seen[1] == (8, "ip", {"uri": "/data/m.db", "collection": "c1", "token": "root:Milvus"})


def test_ivf_trains_when_the_collection_first_passes_the_threshold(tmp_path):
    x, q = shared_direction_data(3000, dim=64, clusters=60), shared_direction_data(50, 64, 60, seed=1)
    store = make_store("IVF16,Flat?nprobe=16&rescore=0&train_at=1000", 64)
    for s in range(0, 900, 100):  # below the threshold: stored, searched exactly
        store.add(np.arange(s, s + 100), x[s:s + 100])
    assert not store.is_trained
    store.remove(np.arange(0, 50))
    scores, got = store.search(q, 10)
    np.testing.assert_array_equal(got, exact(x[50:900], q, 10, "ip") + 50)
    store.save(tmp_path / "s")
    store = load_store(tmp_path / "s")
    assert not store.is_trained and len(store) == 850
    for s in range(900, 3000, 100):
        store.add(np.arange(s, s + 100), x[s:s + 100])
        if s + 100 >= 1000:  # trained on the stored vectors, all live ones indexed
            assert store.is_trained and store._index.ntotal == s + 100 - 50
    _, got = store.search(q, 10)  # every list probed: exact
    np.testing.assert_array_equal(np.sort(got, 1), np.sort(exact(x[50:], q, 10, "ip") + 50, 1))


def test_index_on_an_ivf_store_trains_midway_and_reopens(tmp_path):
    """An index whose IVF store passes its training threshold while images are being added."""
    from PIL import Image

    import lookalike
    from conftest import synthetic_photo

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(30):
        Image.fromarray(synthetic_photo(100 + i)).save(photos / f"p{i:02d}.png")
    spec = "IVF4,Flat?nprobe=4&rescore=0&train_at=20&max_train=1000"
    with lookalike.open(tmp_path / "ivf", pipeline="color", store=spec) as idx:
        for start in (0, 10, 20):  # three runs of ten: the second one crosses the threshold
            idx.add([photos / f"p{i:02d}.png" for i in range(start, start + 10)])
            assert idx.store.is_trained == (start + 10 >= 20)
        got = idx.search(photos / "p07.png", k=5)
    with lookalike.open(tmp_path / "flat", pipeline="color", store="flat") as flat:
        flat.add([photos])
        want = flat.search(photos / "p07.png", k=5)
    assert [h.path for h in got.hits] == [h.path for h in want.hits]  # every list probed: exact
    with lookalike.open(tmp_path / "ivf") as again:
        assert again.store.is_trained and len(again.store) == 30
        assert [h.path for h in again.search(photos / "p07.png", k=5).hits] == [h.path for h in want.hits]


def test_auto_index_moves_to_ivf_when_it_outgrows_exact_search(tmp_path, monkeypatch):
    from PIL import Image

    import lookalike
    from conftest import synthetic_photo
    from lookalike.store import factory

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(24):
        Image.fromarray(synthetic_photo(200 + i)).save(photos / f"p{i:02d}.png")
    monkeypatch.setattr(factory, "EXACT_UP_TO", 15)  # a small collection stands in for 50,000
    with lookalike.open(tmp_path / "idx", pipeline="color") as idx:
        idx.add([photos / f"p{i:02d}.png" for i in range(9)])
        first = idx.store
        idx.add([photos / "p09.png"])
        assert isinstance(first, FlatStore) and idx.store is first  # not outgrown: kept
        before = [h.path for h in idx.search(photos / "p03.png", k=5).hits]
        idx.add([photos / f"p{i:02d}.png" for i in range(10, 24)])  # 24 > 15: rebuilt as IVF
        assert isinstance(idx.store, IVFPQStore) and idx.store.factory == "IVF64,Flat"
        assert len(idx.store) == 24
        after = [h.path for h in idx.search(photos / "p03.png", k=24).hits]
        assert [p for p in after if p in before][:5] == before  # the first ten keep their order
    with lookalike.open(tmp_path / "idx") as again:
        assert isinstance(again.store, IVFPQStore) and len(again.store) == 24
