"""Approximate search on an HNSW graph (``faiss.IndexHNSWFlat``): sub-millisecond queries, all in RAM.

FAISS HNSW cannot delete: removed ids become tombstones in a ``RowMap`` and are filtered out during
the graph search (an ``IDSelectorBitmap`` of live rows, so ``k`` live results still come back);
``compact()`` rebuilds the graph without them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.store.base import VectorStore, as_ids, as_vectors, empty_result, exact_top_k
from lookalike.store.lazy import faiss
from lookalike.store.rows import RowMap, commit_folder, read_manifest, save_npy, top_k

EXACT_FLOATS = 32_000_000  # a filtered search scores its subset exactly up to this many floats (128 MB)
GATHER_MAX = 4096  # up to this many rows, an exact subset search copies them out instead of scanning all


def _metric(name: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if name == "ip" else faiss.METRIC_L2


class HNSWStore(VectorStore):
    """HNSW graph over full vectors (or a FAISS factory string starting with ``HNSW``)."""

    kind = "hnsw"

    def __init__(self, dim: int, metric: str = "ip", factory: str = "HNSW32",
                 ef_construction: int = 80, ef_search: int = 96) -> None:
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        if not factory.startswith("HNSW"):
            raise ValueError(f"an HNSW factory string starts with 'HNSW', not {factory!r}")
        self.dim, self.metric, self.factory = dim, metric, factory
        self.ef_construction, self.ef_search = ef_construction, ef_search
        self._index = self._new_index()
        self._rows = RowMap()
        self.tuning: dict | None = None  # the search setting ``store.tuning`` chose, and its recall

    def _new_index(self) -> faiss.Index:
        index = faiss.index_factory(self.dim, self.factory, _metric(self.metric))
        faiss.downcast_index(index).hnsw.efConstruction = self.ef_construction
        return index

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        if not self._index.is_trained:  # only for scalar-quantised storage
            self._index.train(as_vectors(vectors, self.dim))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_ids(ids), as_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if not len(ids):
            return
        self.train(vectors)
        self._rows.append(ids)
        self._index.add(vectors)

    def remove(self, ids: np.ndarray) -> int:
        rows = self._rows.find(as_ids(ids))
        rows = np.unique(rows[rows >= 0])
        self._rows.kill(rows)
        return int(len(rows))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        kk = min(k, self._rows.n_rows)
        if len(self._rows) == 0:
            return top_k(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), k)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, kk)
        bitmap = None
        if self._rows.n_dead:  # skip tombstones inside the search
            alive = np.zeros(self._rows.n_rows, bool)
            alive[self._rows.live_rows()] = True
            bitmap = np.packbits(alive, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(alive), faiss.swig_ptr(bitmap))
        dist, rows = self._index.search(q, kk, params=params)
        del bitmap  # kept alive until the search returned
        scores = -dist if self.metric == "l2" else dist
        return top_k(scores, self._rows.to_ids(rows), k)

    def search_within(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search among ``ids`` only. When the graph keeps its vectors uncompressed and the subset
        is small enough (``EXACT_FLOATS`` floats to score), the stored vectors are scanned exactly
        with an ID selector of the subset's rows (no copy); otherwise the graph is walked with that
        selector and ``efSearch`` raised in inverse proportion to the share kept (a walk meets
        members at that rate), so k members still come back."""
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        rows = self._rows.find(np.unique(as_ids(ids)))
        rows = rows[rows >= 0]
        if not len(rows):
            return empty_result(len(q), k)
        kk = min(k, len(rows))
        sel = faiss.IDSelectorBatch(rows)
        storage = faiss.downcast_index(faiss.downcast_index(self._index).storage)
        flat = isinstance(storage, faiss.IndexFlat)
        if len(rows) * self.dim > (EXACT_FLOATS if flat else EXACT_FLOATS // 8):
            share = len(rows) / max(len(self._rows), 1)
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(min(max(self.ef_search, k) / share, max(self.ef_search, self._rows.n_rows)))
            params.sel = sel
            dist, found = self._index.search(q, kk, params=params)
            if (found >= 0).sum(axis=1).min() >= kk:  # else the walk met too few members: scan them
                return top_k(-dist if self.metric == "l2" else dist, self._rows.to_ids(found), k)
        if flat and len(rows) <= GATHER_MAX:  # a few rows: copy them out of the storage and score them
            view = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * self.dim).reshape(storage.ntotal, self.dim)
            return exact_top_k(q, view[np.sort(rows)], self._rows.to_ids(np.sort(rows)), k, self.metric)
        if flat:  # more: scan the storage, skipping rows outside the subset
            dist, found = storage.search(q, kk, params=faiss.SearchParameters(sel=sel))
            return top_k(-dist if self.metric == "l2" else dist, self._rows.to_ids(found), k)
        return exact_top_k(q, np.vstack([self._index.reconstruct(int(r)) for r in rows]),
                           self._rows.to_ids(rows), k, self.metric)

    def exact_search(self, queries: np.ndarray, k: int, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """The true k nearest neighbours among the live rows (a scan of the stored vectors)."""
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        live = self._rows.live_rows()
        if not len(live):
            return top_k(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), k)
        heap = faiss.ResultHeap(len(q), min(k, len(live)), keep_max=True)
        for s in range(0, self._rows.n_rows, chunk):
            n = min(chunk, self._rows.n_rows - s)
            rows = live[(live >= s) & (live < s + n)]
            v = self._index.reconstruct_n(s, n)[rows - s]
            sc = q @ v.T if self.metric == "ip" else -(
                (q * q).sum(1)[:, None] - 2 * q @ v.T + (v * v).sum(1)[None])
            kk = min(heap.k, len(rows))
            if kk:
                top = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
                heap.add_result(np.ascontiguousarray(np.take_along_axis(sc, top, 1), np.float32),
                                np.ascontiguousarray(rows[top], np.int64))
        heap.finalize()
        return top_k(heap.D, self._rows.to_ids(heap.I), k)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids)
        rows = self._rows.find(ids)
        if (rows < 0).any():
            raise KeyError(int(ids[np.argmax(rows < 0)]))
        out = np.empty((len(ids), self.dim), np.float32)
        for i, r in enumerate(rows):
            out[i] = self._index.reconstruct(int(r))
        return out

    def ids(self) -> np.ndarray:
        return self._rows.live_ids()

    def compact(self, batch: int = 50_000) -> int:
        """Rebuild the graph from live vectors only; return how many tombstones were dropped."""
        dropped = self._rows.n_dead
        if not dropped:
            return 0
        live = self._rows.live_rows()
        ids = self._rows.to_ids(live)
        old, self._index, self._rows = self._index, self._new_index(), RowMap()
        if not self._index.is_trained:
            self._index = faiss.clone_index(old)
            self._index.reset()
        for s in range(0, len(live), batch):
            chunk = live[s:s + batch]
            vecs = np.vstack([old.reconstruct(int(r)) for r in chunk]).astype(np.float32)
            self._rows.append(ids[s:s + batch])
            self._index.add(vecs)
        return dropped

    def memory_bytes(self) -> int:
        """In-memory size: vectors, graph links and the row table."""
        h = faiss.downcast_index(self._index)
        g = h.hnsw
        codes = h.ntotal * faiss.downcast_index(h.storage).code_size
        links = g.neighbors.size() * 4 + g.offsets.size() * 8 + g.levels.size() * 4
        return int(codes + links + self._rows.nbytes())

    def save(self, path: Path) -> None:
        ids, alive = self._rows.arrays()
        commit_folder(Path(path), {
            "index": lambda p: faiss.write_index(self._index, str(p)),
            "ids": lambda p: save_npy(p, ids),
            "alive": lambda p: save_npy(p, alive),
        }, {"kind": self.kind, "dim": self.dim, "metric": self.metric, "factory": self.factory,
            "ef_construction": self.ef_construction, "ef_search": self.ef_search, "tuning": self.tuning})

    @classmethod
    def load(cls, path: Path) -> "HNSWStore":
        path = Path(path)
        m = read_manifest(path)
        store = cls(m["dim"], m["metric"], m["factory"], m["ef_construction"], m["ef_search"])
        store._index = faiss.read_index(str(path / m["files"]["index"]))
        store._rows = RowMap(np.load(path / m["files"]["ids"]), np.load(path / m["files"]["alive"]))
        store.tuning = m.get("tuning")
        return store

    def __len__(self) -> int:
        return len(self._rows)
