"""``VectorStore.search_within``: k nearest among a subset, through each store's exact and
ID-selector paths, against the exact answer."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.store import hnsw, ivfpq
from lookalike.store.factory import make_store
from lookalike.vectors import l2n


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 20, d))
    return l2n((centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32))


@pytest.mark.parametrize("spec", ["flat", "hnsw", "ivfflat?train_at=1000&nprobe=4", "ivfpq?train_at=1000",
                                  "HNSW16,SQ8"])
@pytest.mark.parametrize("path", ["exact", "scan", "index"])
def test_search_within_returns_k_of_the_subset(spec, path, monkeypatch):
    if path == "scan":  # an exact scan with an ID selector rather than copied rows
        monkeypatch.setattr(hnsw, "GATHER_MAX", 0)
    if path == "index":  # force the ID-selector paths (graph walk, probed lists)
        monkeypatch.setattr(hnsw, "EXACT_FLOATS", 0)
        monkeypatch.setattr(ivfpq, "EXACT_FLOATS", 0)
    n, d, k = 6000, 32, 10
    x = clustered(n, d)
    ids = np.arange(1000, 1000 + n)
    store = make_store(spec, d, "ip")
    if not store.is_trained:
        store.train(x)
    store.add(ids, x)
    store.remove(ids[:100])  # tombstones / removed rows stay out
    rng = np.random.default_rng(1)
    q = clustered(20, d, seed=2)
    for share in (0.01, 0.1, 0.5):
        allowed = np.sort(rng.choice(ids, int(n * share), replace=False))
        live = np.setdiff1d(allowed, ids[:100])
        scores, got = store.search_within(q, k, allowed)
        assert got.shape == (len(q), k) and (got >= 0).all(), (spec, share)
        assert np.isin(got, live).all()
        truth = live[np.argsort(-(q @ x[live - 1000].T), axis=1)[:, :k]]
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)])
        assert recall >= (0.97 if "pq" not in spec else 0.8), (spec, share, recall)
        assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    _, none = store.search_within(q, k, np.array([5, 6], np.int64))  # ids not stored
    assert (none == -1).all()
