"""Shared parts of the approximate stores: a row table with tombstones, and atomic folder saves.

FAISS graph and quantised indexes address vectors by consecutive internal labels (rows). ``RowMap``
maps rows to the caller's int64 ids, marks removed rows dead, and finds the live row of an id with a
sorted lookup built on demand (numpy, no per-id Python objects, so 10^6 ids cost ~17 MB).
"""
from __future__ import annotations

import ctypes
import json
import os
import uuid
from pathlib import Path
from typing import Callable

import numpy as np


class RowMap:
    """Row -> id table with tombstones; ``find`` maps ids back to their live rows."""

    def __init__(self, ids: np.ndarray | None = None, alive: np.ndarray | None = None) -> None:
        ids = np.zeros(0, np.int64) if ids is None else np.asarray(ids, np.int64)
        self._ids = ids.copy()
        self._alive = np.ones(len(ids), bool) if alive is None else np.asarray(alive, bool).copy()
        self.n_rows = len(ids)
        self._live = int(self._alive[: self.n_rows].sum())  # kept, not counted per query (O(n) at 1M rows)
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None

    def append(self, ids: np.ndarray) -> np.ndarray:
        """Give new rows to ``ids`` (which must not be live already); return the rows."""
        if len(ids) != len(np.unique(ids)):
            raise ValueError("ids repeat within one add")
        if len(self) and (self.find(ids) >= 0).any():
            raise ValueError("some ids are present already")
        start, end = self.n_rows, self.n_rows + len(ids)
        if end > len(self._ids):  # grow geometrically
            cap = max(end, 2 * len(self._ids), 1024)
            self._ids = np.resize(self._ids, cap)
            self._alive = np.concatenate([self._alive[:start], np.zeros(cap - start, bool)])
        self._ids[start:end] = ids
        self._alive[start:end] = True
        self.n_rows = end
        self._live += len(ids)
        self._lookup = None
        return np.arange(start, end, dtype=np.int64)

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Live row of each id, -1 where the id is absent."""
        if self._lookup is None:
            live = np.flatnonzero(self._alive[: self.n_rows])
            order = np.argsort(self._ids[live], kind="stable")
            self._lookup = (self._ids[live][order], live[order])
        keys, rows = self._lookup
        pos = np.searchsorted(keys, ids)
        pos_c = np.minimum(pos, max(len(keys) - 1, 0))
        hit = (pos < len(keys)) & (keys[pos_c] == ids) if len(keys) else np.zeros(len(ids), bool)
        return np.where(hit, rows[pos_c] if len(keys) else -1, -1).astype(np.int64)

    def kill(self, rows: np.ndarray) -> None:
        rows = np.unique(np.asarray(rows, np.int64))
        self._live -= int(self._alive[rows].sum())  # rows dead already are not counted twice
        self._alive[rows] = False
        self._lookup = None

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self._alive[: self.n_rows]).astype(np.int64)

    def live_ids(self) -> np.ndarray:
        return self._ids[self.live_rows()].copy()

    def to_ids(self, rows: np.ndarray) -> np.ndarray:
        """Map result rows to ids; -1 for missing or dead rows."""
        safe = np.clip(rows, 0, max(self.n_rows - 1, 0))
        ok = (rows >= 0) & (rows < self.n_rows)
        if self.n_rows:
            ok &= self._alive[safe]
            return np.where(ok, self._ids[safe], -1)
        return np.full(rows.shape, -1, np.int64)

    @property
    def n_dead(self) -> int:
        return self.n_rows - len(self)

    def nbytes(self) -> int:
        return int(self.n_rows * 9 + (0 if self._lookup is None else len(self) * 16))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._ids[: self.n_rows].copy(), self._alive[: self.n_rows].copy()

    def __len__(self) -> int:
        return self._live


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` per row (ids of -1 rank last), padded with (-inf, -1) to width ``k``."""
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.hstack([scores, np.full((len(scores), pad), -np.inf, np.float32)])
        ids = np.hstack([ids, np.full((len(ids), pad), -1, np.int64)])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    s = np.take_along_axis(scores, order, 1)
    i = np.take_along_axis(ids, order, 1)
    i[~np.isfinite(s)] = -1
    return s, i.astype(np.int64)


MANIFEST = "manifest.json"


def commit_folder(path: Path, parts: dict[str, Callable[[Path], None]], meta: dict,
                  keep: tuple[str, ...] = ()) -> None:
    """Write each part to a fresh file in ``path``, then switch ``manifest.json`` atomically.

    The manifest is the commit point: a crash before it leaves the previous save intact. Files the
    new manifest does not name (and that are not in ``keep``) are deleted afterwards.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    files = {}
    for name, write in parts.items():
        fname = f"{name}-{tag}"
        write(path / fname)
        files[name] = fname
    meta = {**meta, "files": {**files, **{k: k for k in keep}}}
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path / MANIFEST)
    wanted = set(meta["files"].values()) | {MANIFEST}
    for f in path.iterdir():
        if f.name not in wanted and f.is_file():
            f.unlink()


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (no ``.npy`` suffix added)."""
    with open(path, "wb") as f:
        np.save(f, array)


def read_manifest(path: Path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def release_free_memory() -> None:
    """Hand freed heap pages back to the system (glibc's ``malloc_trim``; elsewhere a no-op).

    FAISS inverted lists grow by reallocation, and glibc keeps the freed blocks resident; over a
    large build they add a good part of the vectors' size to the resident memory."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
LARGE_BLOCK = 64 * 1024
_large_blocks_mapped = False


def map_large_blocks(threshold: int = LARGE_BLOCK) -> None:
    """Serve heap blocks of ``threshold`` bytes or more by mappings of their own (glibc's
    ``mallopt(M_MMAP_THRESHOLD)``; elsewhere a no-op). Process-wide, set once.

    IVF-Flat lists grow by reallocation. From glibc's heap, the blocks each list leaves behind are
    reused by the next lists' growth, so their spare capacity ends up resident: 15-47 % over the
    vectors. A mapped block goes back to the system when freed and its unused capacity is never
    touched, so the resident size follows the vectors (5-7 % over them). Setting the threshold
    also stops glibc from raising it on its own after large frees."""
    global _large_blocks_mapped
    if _large_blocks_mapped:
        return
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, int(threshold))
    except (OSError, AttributeError):
        pass
    _large_blocks_mapped = True
