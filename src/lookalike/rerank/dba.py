"""Database-side augmentation (DBA, alpha-DBA).

Each database vector becomes ``l2n(sum_j w_j x_j)`` over its ``n`` nearest database vectors
(itself included, weight 1) with ``w_j = sim_j ** alpha``, taking only neighbours with
``sim_j >= min_sim`` that, when ``recip > 0``, also have the vector among their own ``recip``
nearest (a reciprocity test). ``alpha=0, min_sim=-1, recip=0`` is classic DBA (plain mean).

How a pipeline uses it: after ``fit(ids, vectors)`` it indexes ``transform_database(ids,
vectors)`` (the augmented vectors) instead of the originals; queries stay as they are, so
``rerank`` is the identity. ``update`` refreshes the kNN graph incrementally and returns the ids
whose augmented vector changed (new ones, and neighbours of what came or went); the pipeline
replaces those in the store.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lookalike.store.base import VectorStore, as_ids
from lookalike.rerank.base import RERANKERS, Reranker
from lookalike.vectors import l2n
from lookalike.rerank.knn import KnnGraph


@RERANKERS.register("dba")
class DatabaseAugmentation(Reranker):
    """Database-side augmentation (αDBA): each stored vector becomes a similarity-weighted mean of its close neighbours."""

    name = "dba"
    transforms_database = True

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"n": 20, "alpha": 5.0, "min_sim": 0.5, "recip": 0}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.graph = KnnGraph(max(int(self.params["n"]), int(self.params["recip"]) + 1))

    def fit(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.graph.fit(ids, vectors)

    def update(self, added_ids: np.ndarray, added_vectors: np.ndarray,
               removed_ids: np.ndarray) -> np.ndarray:
        changed = self.graph.update(added_ids, added_vectors, removed_ids)
        if int(self.params["recip"]) > 0 and len(changed):
            # the reciprocity test reads the neighbours' rows too
            hit = np.zeros(len(self.graph), bool)
            hit[self.graph.positions(changed)] = True
            n = min(int(self.params["n"]), self.graph.width)
            rows = hit[self.graph.nbr[:, :n]].any(axis=1) | hit
            changed = self.graph.ids[rows]
        return changed

    def augmented(self, positions: np.ndarray) -> np.ndarray:
        """Augmented vectors of graph rows."""
        g, alpha, floor = self.graph, float(self.params["alpha"]), float(self.params["min_sim"])
        if not len(positions):
            return np.zeros((0, g.vectors.shape[1] if g.vectors.ndim == 2 else 0), np.float32)
        n, recip = min(int(self.params["n"]), g.width), int(self.params["recip"])
        nbr, sim = g.nbr[positions, :n], g.sim[positions, :n].astype(np.float64)
        s = np.maximum(sim, 0.0)
        ok = sim >= floor
        if recip > 0:
            ok &= sim >= g.sim[nbr, min(recip, g.width - 1)]
        w = np.where(ok, s ** alpha if alpha > 0 else 1.0, 0.0)
        w[:, 0] = 1.0  # the vector itself (rank 0 of its own row)
        out = np.empty((len(nbr), g.vectors.shape[1]), np.float32)
        for a in range(0, len(nbr), 1024):  # chunks bound the (rows, n, D) gather
            b = a + 1024
            out[a:b] = np.einsum("qn,qnd->qd", w[a:b].astype(np.float32), g.vectors[nbr[a:b]])
        return l2n(out)

    def transform_database(self, ids: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """Augmented vectors of ``ids`` (from the graph, which holds the originals)."""
        pos = self.graph.positions(as_ids(ids))
        if (pos < 0).any():
            raise KeyError("transform_database: ids not fitted; call fit() or update() first")
        return self.augmented(pos)

    def rerank(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray,
               store: VectorStore, context: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return scores, ids

    def state(self) -> dict[str, np.ndarray]:
        return self.graph.state()

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.graph.set_state(arrays)
