"""Compressed approximate search: a trained FAISS index (IVF-PQ, OPQ, ...) in RAM, exact vectors on disk.

The quantised index (tens of bytes per vector) proposes a shortlist of ``k * rescore`` rows; their
exact scores are then computed from the original float32 vectors, kept in an append-only file read
through ``np.memmap``. Row numbers are the FAISS labels; a ``RowMap`` maps them to ids.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import faiss
import numpy as np

from .base import VectorStore, as_ids, as_vectors
from .rows import RowMap, commit_folder, read_manifest, save_npy, top_k

_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


class IVFPQStore(VectorStore):
    """Any trainable FAISS factory string (default IVF-PQ) plus exact re-scoring from disk."""

    kind = "ivfpq"

    def __init__(self, dim: int, metric: str = "ip", factory: str = "IVF1024,PQ32",
                 nprobe: int = 32, rescore: int = 10, max_train: int = 100_000,
                 storage_dir: Path | None = None, by_residual: int = -1) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        self.dim, self.metric, self.factory = dim, metric, factory
        self.nprobe, self.rescore, self.max_train = nprobe, rescore, max_train
        self.by_residual = by_residual  # -1: FAISS's default; 0: one PQ table per query (fast for IP)
        self._index = self._new_index()
        self._rows = RowMap()
        self._tmp: tempfile.TemporaryDirectory | None = None
        if storage_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lookalike-vectors-")
            storage_dir = Path(self._tmp.name)
        self._vec_path = Path(storage_dir) / f"vectors-{uuid.uuid4().hex[:8]}.f32"
        self._vec_path.touch()
        self._mm: np.memmap | None = None

    def _new_index(self) -> faiss.Index:
        try:
            index = faiss.index_factory(self.dim, self.factory, _METRICS[self.metric])
        except RuntimeError as e:
            raise ValueError(f"bad FAISS factory string {self.factory!r}: {e}") from None
        try:
            coder = faiss.downcast_index(faiss.extract_index_ivf(index))
        except RuntimeError:  # not IVF: give it ids through an IDMap
            coder = faiss.downcast_index(index)
            index = faiss.IndexIDMap(index)
            index.own_fields = True
        if hasattr(coder, "do_polysemous_training"):  # on by default and very slow
            coder.do_polysemous_training = False
        if self.by_residual >= 0 and hasattr(coder, "by_residual"):
            coder.by_residual = bool(self.by_residual)
        return index

    # -- training -------------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        """Train the quantisers on at most ``max_train`` rows sampled from ``vectors``."""
        v = as_vectors(vectors, self.dim)
        if len(v) > self.max_train:
            pick = np.sort(np.random.default_rng(0).choice(len(v), self.max_train, replace=False))
            v = v[pick]
        try:
            self._index.train(v)
        except RuntimeError as e:  # e.g. fewer training points than centroids
            raise ValueError(f"cannot train {self.factory!r} on {len(v)} vectors: {e}") from None

    def _set_nprobe(self) -> None:
        try:
            faiss.extract_index_ivf(self._index).nprobe = self.nprobe
        except RuntimeError:
            pass

    # -- vectors on disk ------------------------------------------------------------------------
    def _vectors(self) -> np.ndarray:
        if self._mm is None or len(self._mm) != self._rows.n_rows:
            self._mm = (np.memmap(self._vec_path, np.float32, "r", shape=(self._rows.n_rows, self.dim))
                        if self._rows.n_rows else np.zeros((0, self.dim), np.float32))
        return self._mm

    def _append_vectors(self, vectors: np.ndarray) -> None:
        with open(self._vec_path, "ab") as f:
            f.write(vectors.tobytes())
        self._mm = None

    # -- the contract ---------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_ids(ids), as_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if not len(ids):
            return
        if not self._index.is_trained:
            self.train(vectors)
        rows = self._rows.append(ids)
        self._append_vectors(vectors)
        self._index.add_with_ids(vectors, rows)

    def remove(self, ids: np.ndarray) -> int:
        rows = self._rows.find(as_ids(ids))
        rows = np.unique(rows[rows >= 0])
        if len(rows):
            self._rows.kill(rows)
            self._index.remove_ids(faiss.IDSelectorBatch(rows))
        return int(len(rows))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        if len(self._rows) == 0:
            return top_k(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), k)
        self._set_nprobe()
        kk = min(self._rows.n_rows, k * max(1, self.rescore))
        dist, rows = self._index.search(q, kk)
        ids = self._rows.to_ids(rows)
        if self.rescore:
            scores = self._exact_scores(q, rows, ids >= 0)
        else:
            scores = -dist if self.metric == "l2" else dist
        return top_k(scores, ids, k)

    def _exact_scores(self, q: np.ndarray, rows: np.ndarray, valid: np.ndarray,
                      chunk: int = 32) -> np.ndarray:
        """Exact similarity of each (query, shortlisted row) pair, read from the vector file."""
        out = np.full(rows.shape, -np.inf, np.float32)
        mm = self._vectors()
        for s in range(0, len(q), chunk):
            r, ok = rows[s:s + chunk], valid[s:s + chunk]
            qi, _ = np.nonzero(ok)
            uniq, inv = np.unique(r[ok], return_inverse=True)
            v = np.asarray(mm[uniq])[inv]  # sorted reads, then fan out
            qq = q[s:s + chunk][qi]
            if self.metric == "ip":
                sc = np.einsum("ij,ij->i", v, qq)
            else:
                sc = -np.einsum("ij,ij->i", v - qq, v - qq)
            block = out[s:s + chunk]
            block[ok] = sc
        return out

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids)
        rows = self._rows.find(ids)
        if (rows < 0).any():
            raise KeyError(int(ids[np.argmax(rows < 0)]))
        return np.array(self._vectors()[rows], np.float32)

    def ids(self) -> np.ndarray:
        return self._rows.live_ids()

    def compact(self, batch: int = 100_000) -> int:
        """Rewrite the vector file and the index without removed rows; return how many were dropped."""
        dropped = self._rows.n_dead
        if not dropped:
            return 0
        live, old_mm = self._rows.live_rows(), self._vectors()
        ids = self._rows.to_ids(live)
        index = faiss.clone_index(self._index)
        index.reset()  # keeps the trained quantisers
        new_path = self._vec_path.with_name(f"vectors-{uuid.uuid4().hex[:8]}.f32")
        rows = RowMap()
        with open(new_path, "wb") as f:
            for s in range(0, len(live), batch):
                vecs = np.ascontiguousarray(old_mm[live[s:s + batch]], np.float32)
                f.write(vecs.tobytes())
                index.add_with_ids(vecs, rows.append(ids[s:s + batch]))
        self._index, self._rows, self._mm = index, rows, None
        old_path, self._vec_path = self._vec_path, new_path
        if self._tmp is not None:
            old_path.unlink(missing_ok=True)  # a saved folder's file goes at its next save
        return dropped

    def memory_bytes(self) -> int:
        """In-memory size: codes, inverted lists, quantisers and the row table (not the disk file)."""
        return int(faiss.serialize_index(self._index).nbytes + self._rows.nbytes())

    def save(self, path: Path) -> None:
        path = Path(path)
        ids, alive = self._rows.arrays()
        parts = {
            "index": lambda p: faiss.write_index(self._index, str(p)),
            "ids": lambda p: save_npy(p, ids),
            "alive": lambda p: save_npy(p, alive),
        }
        inside = path.exists() and self._vec_path.parent.resolve() == path.resolve()
        if not inside:
            parts["vectors"] = lambda p: shutil.copyfile(self._vec_path, p)
        meta = {"kind": self.kind, "dim": self.dim, "metric": self.metric, "factory": self.factory,
                "nprobe": self.nprobe, "rescore": self.rescore, "max_train": self.max_train,
                "by_residual": self.by_residual,
                "n_rows": self._rows.n_rows}
        if inside:
            meta["vectors"] = self._vec_path.name
        commit_folder(path, parts, meta, keep=(self._vec_path.name,) if inside else ())
        if not inside:  # keep appending to the saved copy from now on
            self._vec_path = path / read_manifest(path)["files"]["vectors"]
            self._mm = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    @classmethod
    def load(cls, path: Path) -> "IVFPQStore":
        path = Path(path)
        m = read_manifest(path)
        files = m["files"]
        store = cls(m["dim"], m["metric"], m["factory"], m["nprobe"], m["rescore"], m["max_train"],
                    storage_dir=path, by_residual=m.get("by_residual", -1))
        store._vec_path.unlink()  # the constructor's empty file: use the saved one
        store._vec_path = path / files.get("vectors", m.get("vectors", ""))
        store._index = faiss.read_index(str(path / files["index"]))
        store._rows = RowMap(np.load(path / files["ids"]), np.load(path / files["alive"]))
        size = m["n_rows"] * m["dim"] * 4
        if store._vec_path.stat().st_size > size:  # rows appended after the last save
            os.truncate(store._vec_path, size)
        return store

    def __len__(self) -> int:
        return len(self._rows)
