"""Exact search with FAISS (``IndexIDMap2`` over a flat inner-product or L2 index)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lookalike.store.base import VectorStore, as_ids, as_vectors, empty_result, merge_top_k
from lookalike.store.lazy import faiss


class FlatStore(VectorStore):
    """Brute-force exact search; the right choice up to ~10^5 vectors."""

    def __init__(self, dim: int, metric: str = "ip") -> None:
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        self.dim, self.metric = dim, metric
        base = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
        self._index = faiss.IndexIDMap2(base)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_ids(ids), as_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if len(ids):
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = as_ids(ids)
        if not len(ids):
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        n = self._index.ntotal
        if n == 0:
            return (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64))
        scores, ids = self._index.search(q, min(k, n))
        if self.metric == "l2":
            scores = -scores
        if k > n:  # pad to the requested width
            pad = k - n
            scores = np.hstack([scores, np.full((len(q), pad), -np.inf, np.float32)])
            ids = np.hstack([ids, np.full((len(q), pad), -1, np.int64)])
        scores[ids < 0] = -np.inf
        return scores.astype(np.float32), ids.astype(np.int64)

    def search_within(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search restricted to ``ids`` by a FAISS ID selector (non-members are skipped
        inside the scan)."""
        q = as_vectors(queries, self.dim)
        ids = as_ids(ids)
        k = max(1, int(k))
        if not len(ids) or not self._index.ntotal:
            return empty_result(len(q), k)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))
        kk = min(k, len(ids), self._index.ntotal)
        scores, found = self._index.search(q, kk, params=params)
        if self.metric == "l2":
            scores = -scores
        return merge_top_k(scores.astype(np.float32), found.astype(np.int64), k)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids)
        out = np.empty((len(ids), self.dim), np.float32)
        for i, x in enumerate(ids):
            try:
                out[i] = self._index.reconstruct(int(x))
            except RuntimeError:
                raise KeyError(int(x)) from None
        return out

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def save(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "FlatStore":
        index = faiss.read_index(str(path))
        metric = "ip" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2"
        store = cls(index.d, metric)
        store._index = faiss.IndexIDMap2.cast(index) if not isinstance(index, faiss.IndexIDMap2) else index
        return store

    def __len__(self) -> int:
        return int(self._index.ntotal)
