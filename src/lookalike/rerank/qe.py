"""Query expansion: average query expansion (AQE) and alpha-weighted query expansion (alpha-QE).

The query is replaced by ``l2n(q + sum_i w_i x_i)`` over its top ``n`` results ``x_i`` with
``w_i = sim_i ** alpha``, keeping only neighbours with ``sim_i >= min_sim`` and, when
``recip > 0``, a reciprocity test: the query would be among the neighbour's ``recip`` nearest
database vectors (it beats the neighbour's ``recip``-th neighbour; ``fit`` keeps that kNN
graph). Then the store is searched again, so put this step before steps that re-order a list.
``alpha=0, min_sim=-1, recip=0`` is classic AQE (plain mean). The defaults (alpha 3, floor 0.7,
mutual first neighbours only) are adaptive: a query without a close, reciprocal neighbour is left
as it is, which keeps small groups (instance search) from drifting.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lookalike.store.base import VectorStore
from lookalike.rerank.base import RERANKERS, Reranker
from lookalike.vectors import l2n
from lookalike.rerank.knn import KnnGraph


@RERANKERS.register("aqe")
class QueryExpansion(Reranker):
    """Query expansion (αQE): re-query with the similarity-weighted mean of the query and its reciprocal top neighbours."""

    name = "aqe"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"n": 10, "alpha": 3.0, "min_sim": 0.7, "recip": 1}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.graph = KnnGraph(int(self.params["recip"]) + 1) if self.params["recip"] else None

    def fit(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self.graph is not None:
            self.graph.fit(ids, vectors)

    def update(self, added_ids: np.ndarray, added_vectors: np.ndarray,
               removed_ids: np.ndarray) -> np.ndarray:
        if self.graph is not None:
            self.graph.update(added_ids, added_vectors, removed_ids)
        return np.empty(0, np.int64)

    def state(self) -> dict[str, np.ndarray]:
        return self.graph.state() if self.graph is not None else {}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        if self.graph is not None:
            self.graph.set_state(arrays)

    def expand(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray,
               store: VectorStore) -> np.ndarray:
        """The expanded, L2-normalised queries (Q, D)."""
        n, alpha, floor = int(self.params["n"]), float(self.params["alpha"]), float(self.params["min_sim"])
        query = np.asarray(query, np.float32).reshape(len(ids), -1)
        top_i, top_s = ids[:, :n], scores[:, :n]
        ok = (top_i >= 0) & np.isfinite(top_s)
        out = query.astype(np.float64).copy()
        if ok.any():
            rows = np.nonzero(ok)[0]
            vecs = self._vectors(top_i[ok], store).astype(np.float64)
            # similarities are recomputed, so the step works after any other re-ranker
            sims = np.maximum(np.einsum("ij,ij->i", vecs, query[rows]), 0.0)
            keep = sims >= floor
            if self.graph is not None and len(self.graph):
                pos = self.graph.positions(top_i[ok])
                kth = self.graph.sim[np.maximum(pos, 0), min(int(self.params["recip"]),
                                                             self.graph.width - 1)]
                keep &= (pos >= 0) & (sims >= kth - 1e-6)
            w = np.where(keep, sims ** alpha if alpha > 0 else 1.0, 0.0)
            np.add.at(out, rows, w[:, None] * vecs)
        return l2n(out)

    def _vectors(self, ids: np.ndarray, store: VectorStore) -> np.ndarray:
        """Neighbour vectors: from the fitted graph when there is one (the same vectors its
        reciprocity test was computed on), else from the store."""
        if self.graph is not None and len(self.graph):
            pos = self.graph.positions(ids)
            if (pos >= 0).all():
                return self.graph.vectors[pos]
        return store.reconstruct(ids)

    def rerank(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray,
               store: VectorStore, context: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return store.search(self.expand(query, scores, ids, store), ids.shape[1])
