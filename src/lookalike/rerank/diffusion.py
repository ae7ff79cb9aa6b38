"""Diffusion on the database kNN graph (Iscen et al., CVPR 2017), truncated to the shortlist.

Offline (``fit``): the exact kNN graph (``k`` neighbours), affinities ``max(sim, 0) ** gamma``
kept only between mutual neighbours (``W = min(A, A^T)``, zero diagonal), stored sparse.

Per query: the top ``seeds`` results and their graph neighbours, cut to the ``depth`` most
similar, are the candidates ``P`` (no second search, so a pipeline shortlist of 100 suffices);
they give the subgraph ``W_P``, normalised symmetrically ``S = D^-1/2 W_P D^-1/2``; ``y`` holds ``sim ** gamma`` of the query's top ``kq`` results; the
ranking is ``f`` solving ``(I - alpha S) f = y`` by conjugate gradient (``iters`` steps). The
final score blends ``f`` (scaled to max 1) with the original similarity:
``(1 - beta) f + beta sim``; ``beta=0`` is pure diffusion. With ``debias`` the scores are divided
by the square root of the node degree (symmetric normalisation otherwise favours hubs).
Other results keep their order, after the re-ranked head. ``update`` refreshes the graph
incrementally and rebuilds ``W``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import sparse

from lookalike.store.base import VectorStore
from lookalike.rerank.base import RERANKERS, Reranker, merge_head
from lookalike.rerank.knn import KnnGraph


@RERANKERS.register("diffusion")
class Diffusion(Reranker):
    """Diffusion on a mutual kNN graph of the database from the query's top neighbours (conjugate gradient)."""

    name = "diffusion"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"k": 20, "gamma": 10.0, "alpha": 0.99, "kq": 5, "depth": 1000, "iters": 20,
                "beta": 0.5, "debias": 1, "seeds": 100}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.graph = KnnGraph(int(self.params["k"]))
        self.W = sparse.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.graph.fit(ids, vectors)
        self._build()

    def update(self, added_ids: np.ndarray, added_vectors: np.ndarray,
               removed_ids: np.ndarray) -> np.ndarray:
        self.graph.update(added_ids, added_vectors, removed_ids)
        self._build()
        return np.empty(0, np.int64)

    def _build(self) -> None:
        g, n = self.graph, len(self.graph)
        if n == 0:
            self.W = sparse.csr_matrix((0, 0), dtype=np.float32)
            return
        a = np.maximum(g.sim, 0.0) ** float(self.params["gamma"])
        rows = np.repeat(np.arange(n), g.width)
        A = sparse.csr_matrix((a.reshape(-1), (rows, g.nbr.reshape(-1))), shape=(n, n))
        A.setdiag(0.0)
        A.eliminate_zeros()
        self.W = A.minimum(A.T).tocsr().astype(np.float32)

    def subgraph(self, pos: np.ndarray) -> sparse.csr_matrix:
        """Affinities among the rows ``pos`` (the shortlist), renumbered 0..len(pos)-1."""
        rows = self.W[pos]
        col = np.full(self.W.shape[1], -1, np.int64)
        col[pos] = np.arange(len(pos))
        r = np.repeat(np.arange(len(pos)), np.diff(rows.indptr))
        c = col[rows.indices]
        keep = c >= 0
        return sparse.csr_matrix((rows.data[keep].astype(np.float64), (r[keep], c[keep])),
                                 shape=(len(pos), len(pos)))

    def scores_for(self, query: np.ndarray, pos: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """Diffusion scores of the shortlist positions ``pos`` (best first by ``sims``)."""
        alpha, gamma = float(self.params["alpha"]), float(self.params["gamma"])
        Wp = self.subgraph(pos)
        d = np.asarray(Wp.sum(axis=1)).ravel()
        dinv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
        coo = Wp.tocoo()
        S = sparse.csr_matrix((alpha * coo.data * dinv[coo.row] * dinv[coo.col],
                               (coo.row, coo.col)), shape=Wp.shape)
        y = np.zeros(len(pos))
        kq = int(self.params["kq"])
        y[:kq] = np.maximum(sims[:kq], 0.0) ** gamma
        f = conjugate_gradient(lambda x: x - S @ x, y, int(self.params["iters"]))
        if int(self.params["debias"]):  # divide out sqrt(degree): hubs no longer win by size
            ref = np.sqrt(max(float(np.median(d[d > 0])) if (d > 0).any() else 1.0, 1e-12))
            f = f * np.where(d > 0, dinv, 1.0 / ref)
        return f

    def rerank(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray,
               store: VectorStore, context: Any = None) -> tuple[np.ndarray, np.ndarray]:
        g, depth, beta = self.graph, int(self.params["depth"]), float(self.params["beta"])
        query = np.asarray(query, np.float32).reshape(len(ids), -1)
        if len(g) == 0:
            return scores, ids
        seeds = int(self.params["seeds"])
        out_s, out_i = np.empty_like(scores), np.empty_like(ids)
        for r in range(len(ids)):
            # candidates: the top ``seeds`` results and their graph neighbours (no new search)
            top = ids[r, :seeds]
            spos = g.positions(top[top >= 0])
            spos = spos[spos >= 0]
            pos = np.unique(np.concatenate([spos, g.nbr[spos].ravel()]))
            sims = np.einsum("ij,j->i", g.vectors[pos], query[r])  # no BLAS threads
            order = np.argsort(-sims, kind="stable")[:depth]
            pos, sims = pos[order], sims[order]
            head = g.ids[pos]
            f = self.scores_for(query[r], pos, sims)
            f = f / max(float(np.abs(f).max()), 1e-12)
            new = (1.0 - beta) * f + beta * sims + 1e-6 * sims  # ties fall back on similarity
            out_s[r], out_i[r] = merge_head(new, head, scores[r], ids[r])
        return out_s, out_i

    def state(self) -> dict[str, np.ndarray]:
        return self.graph.state()

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.graph.set_state(arrays)
        self._build()


def conjugate_gradient(matvec: Callable[[np.ndarray], np.ndarray], b: np.ndarray, iters: int,
                       tol: float = 1e-6) -> np.ndarray:
    """Solve ``A x = b`` for symmetric positive definite ``A`` given as ``matvec`` (x0 = b)."""
    x = b.copy()
    r = b - matvec(x)
    p = r.copy()
    rr = float(r @ r)
    stop = (tol * float(np.linalg.norm(b))) ** 2
    for _ in range(iters):
        if rr <= stop:
            break
        Ap = matvec(p)
        step = rr / float(p @ Ap)
        x += step * p
        r -= step * Ap
        rr, rr_old = float(r @ r), rr
        p = r + (rr / rr_old) * p
    return x
