"""Approximate search on an HNSW graph (``faiss.IndexHNSWFlat``): sub-millisecond queries, all in RAM.

FAISS HNSW cannot delete: removed ids become tombstones in a ``RowMap`` and are filtered out during
the graph search (an ``IDSelectorBitmap`` of live rows, so ``k`` live results still come back);
``compact()`` rebuilds the graph without them.
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from lookalike.store.base import VectorStore, as_ids, as_vectors
from lookalike.store.rows import RowMap, commit_folder, read_manifest, save_npy, top_k

_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


class HNSWStore(VectorStore):
    """HNSW graph over full vectors (or a FAISS factory string starting with ``HNSW``)."""

    kind = "hnsw"

    def __init__(self, dim: int, metric: str = "ip", factory: str = "HNSW32",
                 ef_construction: int = 80, ef_search: int = 96) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        if not factory.startswith("HNSW"):
            raise ValueError(f"an HNSW factory string starts with 'HNSW', not {factory!r}")
        self.dim, self.metric, self.factory = dim, metric, factory
        self.ef_construction, self.ef_search = ef_construction, ef_search
        self._index = self._new_index()
        self._rows = RowMap()
        self.tuning: dict | None = None  # the search setting ``store.tuning`` chose, and its recall

    def _new_index(self) -> faiss.Index:
        index = faiss.index_factory(self.dim, self.factory, _METRICS[self.metric])
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
