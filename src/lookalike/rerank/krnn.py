"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), on the query's shortlist.

Offline (``fit``): the exact kNN graph of the database (``k1 + 1`` neighbours, self included),
and for every database vector ``x`` its k-reciprocal set with the 1/2-expansion ``R*(x)``, the
Gaussian-kernel encoding ``V_x[j] = exp(-d(x, j) / sigma)`` over ``R*(x)`` (``d = 1 - cosine``;
``sigma=1`` is the paper's kernel, smaller values favour the closest members; normalised to
sum 1), and the local query expansion ``V_x <- mean(V over the k2 nearest)``, stored sparse.

Per query: ``R*(q)`` from the shortlist and the graph (``q`` is a k1-neighbour of ``g`` when it
beats ``g``'s k1-th neighbour), ``V_q`` likewise, the Jaccard distance to the top ``depth``
results ``d_J = 1 - sum min(V_q, V_g) / sum max(V_q, V_g)``, and the final distance
``(1 - lam) d_J + lam (1 - cosine)``. No N x N matrix is formed at query time.

Approximations to the paper's all-pairs form: database neighbour sets ignore the query (it is
not in the database; the reciprocity test for ``q`` itself is exact), and the query's own
coordinate is left out of the encodings. ``update`` refreshes the graph incrementally and then
recomputes the encodings (vectorised; about a second at 10k vectors).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from lookalike.store.base import VectorStore
from lookalike.rerank.base import RERANKERS, Reranker, merge_head
from lookalike.rerank.knn import KnnGraph


def reciprocal_sets(nbr: np.ndarray, k: int) -> np.ndarray:
    """Padded (-1) k-reciprocal sets: ``j`` in the first ``k+1`` of row ``i`` and vice versa."""
    head = nbr[:, : k + 1]
    rows = np.arange(len(nbr))[:, None, None]
    mutual = (head[head] == rows).any(axis=2)  # (N, k+1): is i among the k+1 nearest of j?
    return np.where(mutual, head, -1)


@RERANKERS.register("krnn")
class KReciprocal(Reranker):
    """k-reciprocal re-ranking: Jaccard distance of k-reciprocal sets blended with the original distance."""

    name = "krnn"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"k1": 10, "k2": 3, "lam": 0.5, "depth": 100, "sigma": 0.1}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.graph = KnnGraph(int(self.params["k1"]) + 1)
        self.V = sparse.csr_matrix((0, 0), dtype=np.float32)
        self.Vraw = self.V

    # ----- offline part -------------------------------------------------------------------
    def fit(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.graph.fit(ids, vectors)
        self._encode()

    def update(self, added_ids: np.ndarray, added_vectors: np.ndarray,
               removed_ids: np.ndarray) -> np.ndarray:
        self.graph.update(added_ids, added_vectors, removed_ids)
        self._encode()
        return np.empty(0, np.int64)

    def _k(self) -> tuple[int, int, int]:
        w = self.graph.width - 1
        k1 = min(int(self.params["k1"]), w)
        return k1, max(1, min(int(round(k1 / 2)), w)), max(1, min(int(self.params["k2"]), w + 1))

    def _encode(self) -> None:
        g, n = self.graph, len(self.graph)
        if n == 0:
            self.V = self.Vraw = sparse.csr_matrix((0, 0), dtype=np.float32)
            return
        k1, kh, k2 = self._k()
        self.R = reciprocal_sets(g.nbr, k1)            # (N, k1+1)
        self.Rh = reciprocal_sets(g.nbr, kh)           # (N, kh+1)
        # 1/2-expansion: add R(c, k1/2) for c in R(x, k1) when it overlaps R(x, k1) by > 2/3
        cand = self.Rh[np.maximum(self.R, 0)]          # (N, k1+1, kh+1)
        cand[self.R < 0] = -1
        inside = (cand[..., None] == self.R[:, None, None, :]).any(axis=3) & (cand >= 0)
        size = (cand >= 0).sum(axis=2)
        take = inside.sum(axis=2) > (2.0 / 3.0) * size
        rows, cols = [], []
        base_r, base_c = np.nonzero(self.R >= 0)
        rows.append(base_r)
        cols.append(self.R[base_r, base_c])
        er, ec = np.nonzero(take)
        ext = cand[er, ec]                               # (m, kh+1)
        rr = np.repeat(er, ext.shape[1])
        cc = ext.reshape(-1)
        ok = cc >= 0
        rows.append(rr[ok])
        cols.append(cc[ok])
        r, c = np.concatenate(rows), np.concatenate(cols)
        m = sparse.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n))
        m.sum_duplicates()  # one entry per (x, j) pair
        mr = np.repeat(np.arange(n), np.diff(m.indptr))
        sigma = float(self.params["sigma"])
        m.data = np.exp(-(1.0 - np.einsum("ij,ij->i", g.vectors[mr], g.vectors[m.indices])) / sigma)
        m.data = m.data.astype(np.float32)
        self.Vraw = _row_normalise(m)
        if k2 > 1:
            qe = sparse.csr_matrix((np.full(n * k2, 1.0 / k2, np.float32),
                                    (np.repeat(np.arange(n), k2), g.nbr[:, :k2].reshape(-1))),
                                   shape=(n, n))
            self.V = (qe @ self.Vraw).tocsr()
        else:
            self.V = self.Vraw
        self.kth = g.sim[:, k1].copy()    # q enters N(g, k1) when it beats this
        self.kth_h = g.sim[:, kh].copy()

    # ----- query time ---------------------------------------------------------------------
    def _query_encoding(self, q: np.ndarray, pos: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """Dense V_q over database positions (pos/sims: the shortlist, best first)."""
        g = self.graph
        k1, kh, k2 = self._k()
        top, top_s = pos[:k1], sims[:k1]
        R = top[top_s > self.kth[top]]                    # q's k1-reciprocal database neighbours
        Rset = set(R.tolist())
        half = set(pos[:kh][sims[:kh] > self.kth_h[pos[:kh]]].tolist())  # R(q, k1/2)
        members = set(Rset)
        for c in R:
            rc = self.Rh[c]
            rc = rc[rc >= 0]
            size = len(rc) + (c in half)                   # q belongs to R(c, k1/2) too
            common = sum(x in Rset for x in rc.tolist()) + (c in half)
            if common > (2.0 / 3.0) * size:
                members.update(rc.tolist())
        vq = np.zeros(len(g), np.float32)
        if members:
            j = np.fromiter(members, np.int64)
            w = np.exp(-(1.0 - np.einsum("ij,j->i", g.vectors[j], q)) / float(self.params["sigma"]))
            vq[j] = w / (w.sum() + 1e-12)
        if k2 > 1:  # local query expansion: q and its k2-1 nearest
            near = pos[: k2 - 1]
            vq = (vq + np.asarray(self.Vraw[near].sum(axis=0)).ravel()) / (1 + len(near))
        return vq

    def rerank(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray,
               store: VectorStore, context: Any = None) -> tuple[np.ndarray, np.ndarray]:
        g, depth, lam = self.graph, int(self.params["depth"]), float(self.params["lam"])
        query = np.asarray(query, np.float32).reshape(len(ids), -1)
        if len(g) == 0:
            return scores, ids
        width = ids.shape[1]
        if width < depth and width < len(g):
            scores, ids = store.search(query, min(depth, len(g)))  # widen a short list
        out_s, out_i = np.empty_like(scores), np.empty_like(ids)
        for r in range(len(ids)):
            head = ids[r, :depth]
            head = head[head >= 0]
            pos = g.positions(head)
            known = pos >= 0
            head, pos = head[known], pos[known]
            sims = np.einsum("ij,j->i", g.vectors[pos], query[r])  # no BLAS threads
            order = np.argsort(-sims, kind="stable")
            head, pos, sims = head[order], pos[order], sims[order]
            vq = self._query_encoding(query[r], pos, sims)
            sub = self.V[pos]
            inter = np.zeros(len(pos), np.float64)
            if sub.nnz:
                mins = np.minimum(sub.data, vq[sub.indices])
                rows = np.repeat(np.arange(len(pos)), np.diff(sub.indptr))
                np.add.at(inter, rows, mins)
            total = vq.sum() + np.asarray(sub.sum(axis=1)).ravel()
            jac = 1.0 - inter / np.maximum(total - inter, 1e-12)
            dist = (1.0 - lam) * jac + lam * (1.0 - sims)
            out_s[r], out_i[r] = merge_head(-dist, head, scores[r], ids[r])
        return out_s[:, :width], out_i[:, :width]

    def state(self) -> dict[str, np.ndarray]:
        return self.graph.state()

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.graph.set_state(arrays)
        self._encode()


def _row_normalise(m: sparse.csr_matrix) -> sparse.csr_matrix:
    s = np.asarray(m.sum(axis=1)).ravel()
    return (sparse.diags(1.0 / np.maximum(s, 1e-12)) @ m).tocsr().astype(np.float32)
