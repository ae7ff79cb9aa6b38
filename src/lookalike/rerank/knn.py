"""Exact k-nearest-neighbour graph of the database, kept current under adds and removes.

Shared by DBA, k-reciprocal re-ranking and diffusion. Row ``i`` holds the ``width = min(k, N)``
nearest database vectors of vector ``i`` by inner product, best first; row ``i`` starts with
``i`` itself (ties aside). Neighbours are stored as row positions.
"""
from __future__ import annotations

import faiss
import numpy as np

from lookalike.store.base import as_ids


def knn_search(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product kNN of ``queries`` among the rows of ``base`` (positions, sims)."""
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    sims, pos = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(base)))
    return pos.astype(np.int64), sims.astype(np.float32)


class KnnGraph:
    """Neighbour positions ``nbr`` (N, width) and similarities ``sim`` (N, width)."""

    def __init__(self, k: int) -> None:
        self.k = int(k)
        self.ids = np.empty(0, np.int64)
        self.vectors = np.empty((0, 0), np.float32)
        self.nbr = np.empty((0, 0), np.int64)
        self.sim = np.empty((0, 0), np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def width(self) -> int:
        return self.nbr.shape[1]

    def fit(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids = as_ids(ids)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(self.ids) != len(self.vectors):
            raise ValueError("ids and vectors differ in length")
        if len(self.ids):
            self.nbr, self.sim = knn_search(self.vectors, self.vectors, self.k)
        else:
            self.nbr, self.sim = np.empty((0, 0), np.int64), np.empty((0, 0), np.float32)
        self._order = np.argsort(self.ids, kind="stable")

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of ids (-1 for ids not in the graph)."""
        ids = as_ids(ids)
        if not len(self.ids):
            return np.full(len(ids), -1, np.int64)
        sorted_ids = self.ids[self._order]
        at = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        pos = self._order[at]
        return np.where(self.ids[pos] == ids, pos, -1)

    def update(self, added_ids: np.ndarray, added_vectors: np.ndarray,
               removed_ids: np.ndarray) -> np.ndarray:
        """Apply adds and removes; return the ids whose neighbour rows changed (new ones included).

        Only affected rows are searched again: rows that lost a neighbour, and rows where a new
        vector beats the current last neighbour. A change of ``width`` (N below k) refits.
        """
        added_ids, removed_ids = as_ids(added_ids), as_ids(removed_ids)
        if len(added_ids):
            added_vectors = np.asarray(added_vectors, np.float32).reshape(len(added_ids), -1)
        else:  # a remove alone
            added_vectors = np.empty((0, self.vectors.shape[1] if self.vectors.ndim == 2 else 0), np.float32)
        rm_pos = self.positions(removed_ids)
        rm_pos = rm_pos[rm_pos >= 0]
        keep = np.ones(len(self.ids), bool)
        keep[rm_pos] = False
        ids = np.concatenate([self.ids[keep], added_ids])
        vecs = (np.vstack([self.vectors[keep], added_vectors]) if len(self.vectors)
                else added_vectors)
        n_old = int(keep.sum())
        if min(self.k, len(ids)) != self.width or n_old == 0:
            self.fit(ids, vecs)
            return ids.copy()
        remap = np.full(len(self.ids), -1, np.int64)
        remap[keep] = np.arange(n_old)
        nbr, sim = remap[self.nbr[keep]], self.sim[keep]
        dirty = (nbr < 0).any(axis=1)
        if len(added_ids):
            # a new vector enters row i when it beats row i's last neighbour
            s_new = vecs[:n_old] @ added_vectors.T
            dirty |= (s_new > sim[:, -1:]).any(axis=1)
        rows = np.concatenate([np.flatnonzero(dirty), np.arange(n_old, len(ids))])
        new_nbr = np.vstack([nbr, np.zeros((len(added_ids), self.width), np.int64)])
        new_sim = np.vstack([sim, np.zeros((len(added_ids), self.width), np.float32)])
        if len(rows):
            p, s = knn_search(vecs, vecs[rows], self.width)
            new_nbr[rows], new_sim[rows] = p, s
        self.ids, self.vectors, self.nbr, self.sim = ids, vecs, new_nbr, new_sim
        self._order = np.argsort(self.ids, kind="stable")
        return ids[rows]

    def state(self, prefix: str = "g_") -> dict[str, np.ndarray]:
        return {prefix + "ids": self.ids, prefix + "vectors": self.vectors,
                prefix + "nbr": self.nbr, prefix + "sim": self.sim,
                prefix + "k": np.array(self.k)}

    def set_state(self, arrays: dict[str, np.ndarray], prefix: str = "g_") -> None:
        self.k = int(arrays[prefix + "k"])
        self.ids, self.vectors = arrays[prefix + "ids"], arrays[prefix + "vectors"]
        self.nbr, self.sim = arrays[prefix + "nbr"], arrays[prefix + "sim"]
        self._order = np.argsort(self.ids, kind="stable")
