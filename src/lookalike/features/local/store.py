"""``LocalFeatureStore``: keypoints and descriptors per image id, in a SQLite table.

An index keeps the table in its catalog (so features change in the same transaction as the
images they belong to); alone, the store is one SQLite file.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np

from lookalike.features.local.keypoints import LocalFeatures

FILENAME = "local_features.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_features (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    h INTEGER NOT NULL, w INTEGER NOT NULL,
    n INTEGER NOT NULL, dim INTEGER NOT NULL, dtype TEXT NOT NULL,
    kpts BLOB NOT NULL, desc BLOB NOT NULL
)"""


class LocalFeatureStore:
    """Add, remove and fetch ``LocalFeatures`` by int64 id; ``path`` is a directory or a file."""

    def __init__(self, path: Path | str | sqlite3.Connection, readonly: bool = False) -> None:
        """``path``: a directory, a ``.sqlite`` file, or an open connection (whose transactions
        the caller runs: writes then join them)."""
        self.readonly = readonly
        if isinstance(path, sqlite3.Connection):
            self.path, self._db, self._owned = None, path, False
        else:
            p = Path(path)
            if p.suffix != ".sqlite":
                p.mkdir(parents=True, exist_ok=True)
                p = p / FILENAME
            self.path, self._owned = p, True
            uri = f"file:{p}?mode=ro" if readonly else f"file:{p}"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        if not readonly:
            self._db.execute(_SCHEMA)
            if self._owned:
                self._db.commit()

    def _write(self):
        """A transaction of our own, or none when the caller's connection runs one."""
        return self._db if self._owned else _Joined()

    def add(self, ids: Iterable[int], feats: Iterable[LocalFeatures]) -> None:
        """Insert (or replace) the features of these ids in one transaction."""
        rows = []
        for i, f in zip(ids, feats):
            kp = np.ascontiguousarray(f.kpts, np.float32)
            d = np.ascontiguousarray(f.desc)
            rows.append((int(i), f.kind, int(f.image_size[0]), int(f.image_size[1]), len(kp),
                         int(d.shape[1]) if d.ndim == 2 else 0, d.dtype.str, kp.tobytes(), d.tobytes()))
        with self._write():
            self._db.executemany("INSERT OR REPLACE INTO local_features VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def remove(self, ids: Iterable[int]) -> int:
        ids = [(int(i),) for i in ids]
        with self._write():
            before = len(self)
            self._db.executemany("DELETE FROM local_features WHERE id = ?", ids)
            return before - len(self)

    def get(self, id_: int) -> LocalFeatures:
        row = self._db.execute("SELECT * FROM local_features WHERE id = ?", (int(id_),)).fetchone()
        if row is None:
            raise KeyError(int(id_))
        return _decode(row)

    def get_many(self, ids: Iterable[int]) -> list[LocalFeatures | None]:
        """Features in the order of ``ids``; ``None`` where an id is absent."""
        ids = [int(i) for i in ids]
        found: dict[int, LocalFeatures] = {}
        for s in range(0, len(ids), 500):
            chunk = ids[s:s + 500]
            q = f"SELECT * FROM local_features WHERE id IN ({','.join('?' * len(chunk))})"
            for row in self._db.execute(q, chunk):
                found[int(row[0])] = _decode(row)
        return [found.get(i) for i in ids]

    def ids(self) -> np.ndarray:
        return np.array([r[0] for r in self._db.execute("SELECT id FROM local_features ORDER BY id")], np.int64)

    def __contains__(self, id_: object) -> bool:
        return self._db.execute("SELECT 1 FROM local_features WHERE id = ?", (int(id_),)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM local_features").fetchone()[0])

    def close(self) -> None:
        if self._owned:
            self._db.close()


class _Joined:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _decode(row: tuple) -> LocalFeatures:
    _, kind, h, w, n, dim, dtype, kp, d = row
    kpts = np.frombuffer(kp, np.float32).reshape(n, 4).copy()
    desc = np.frombuffer(d, np.dtype(dtype)).reshape(n, dim).copy()
    return LocalFeatures(kind, kpts, desc, (int(h), int(w)))
