"""The catalog: one SQLite file with every image's path, hash, status, error and raw descriptor.

SQLite is the source of truth (transactions make a killed run safe); the vector store is a
search structure rebuilt or repaired from it when they disagree. WAL mode lets searches read while
an indexing run writes. Every write transaction moves the ``generation`` on by one, so a reader
can tell cheaply whether anything changed.

A read-only catalog never writes: it opens the file with ``mode=ro`` (and, when no writer has a
write-ahead log open, as ``immutable``, so that SQLite does not even create its ``-shm`` file).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id      INTEGER PRIMARY KEY,
    path    TEXT NOT NULL UNIQUE,
    size    INTEGER,
    mtime   REAL,
    hash    TEXT,
    status  TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error   TEXT,
    width   INTEGER,
    height  INTEGER,
    vector  BLOB,
    added   REAL NOT NULL,
    taken   TEXT,
    camera  TEXT,
    type    TEXT,
    folder  TEXT
);
CREATE INDEX IF NOT EXISTS images_hash ON images(hash);
CREATE INDEX IF NOT EXISTS images_status ON images(status);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Whole-image fingerprints for finding copies (schema 3): the decoded pixels' digest and the
# perceptual hashes of the eight orientations (features.hashes), kept with each indexed image.
HASHES_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_hashes (
    id      INTEGER PRIMARY KEY,
    pixels  TEXT,
    phash   BLOB
);
CREATE INDEX IF NOT EXISTS image_hashes_pixels ON image_hashes(pixels);
"""


@dataclass
class ImageRow:
    id: int
    path: str
    size: int | None
    mtime: float | None
    hash: str | None
    status: str
    error: str | None
    width: int | None = None
    height: int | None = None
    taken: str | None = None  # ISO date-time (EXIF DateTimeOriginal, else the file's mtime)
    camera: str | None = None
    type: str | None = None  # jpg, png, ... (``io.file_type``)
    folder: str | None = None


ROW_COLUMNS = "id, path, size, mtime, hash, status, error, width, height"
META_COLUMNS = "taken, camera, type, folder"


class ThreadConnections:
    """One SQLite connection per thread, each kept so that ``close`` can close them all (the last
    one closed checkpoints the write-ahead log)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection | None:
        return getattr(self._local, "conn", None)

    def keep(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        self._local.conn = conn
        with self._lock:
            self._opened.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._opened = self._opened, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                pass
        self._local = threading.local()


class Catalog:
    """Image metadata, errors, settings and raw descriptors in ``catalog.sqlite``."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self._conns = ThreadConnections()
        self.readonly = readonly
        self._immutable = readonly and not Path(str(self.path) + "-wal").exists()
        if not readonly:
            self.db.executescript(SCHEMA + HASHES_SCHEMA)
        self._columns: str | None = None

    @property
    def has_metadata(self) -> bool:
        """Whether the images table has the metadata columns (an index of schema 2 read-only
        has not; a writer adds them)."""
        return self.columns.endswith(META_COLUMNS)

    def forget_columns(self) -> None:
        """The table's columns changed (a migration added the metadata)."""
        self._columns = None

    @property
    def columns(self) -> str:
        """The columns ``ImageRow`` is read from (metadata as NULL where the table lacks it)."""
        if self._columns is None:
            from lookalike.engine.metadata import has_columns

            self._columns = ROW_COLUMNS + ", " + (META_COLUMNS if has_columns(self.db) else
                                                  "NULL, NULL, NULL, NULL")
        return self._columns

    # -- connections -------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        conn = self._conns.get()
        if conn is None:
            uri = (f"file:{self.path}?mode=ro" + ("&immutable=1" if self._immutable else "")
                   if self.readonly else f"file:{self.path}")
            conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            if not self.readonly:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._conns.keep(conn)
        return conn

    def tx(self) -> "_Tx":
        """One write transaction; it moves the generation on when it commits."""
        if self.readonly:
            raise RuntimeError("write transaction on a read-only catalog")  # a bug in the caller
        return _Tx(self.db)

    def generation(self) -> int:
        """How many write transactions the catalog has seen (0 for a catalog of version 0.2)."""
        row = self.db.execute("SELECT value FROM settings WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0  # stored as an integer (or the JSON text '1')

    def newest_added(self) -> float:
        return float(self.db.execute("SELECT COALESCE(MAX(added), 0) FROM images").fetchone()[0])

    def added_since(self, when: float) -> list[int]:
        """Ids of indexed rows written at or after ``when`` (re-described or new)."""
        return [r[0] for r in self.db.execute("SELECT id FROM images WHERE status='ok' AND added >= ?", (when,))]

    def by_hash(self, digest: str) -> tuple[int, np.ndarray] | None:
        """(id, raw vector) of an indexed image with this content hash, if there is one."""
        row = self.db.execute("SELECT id, vector FROM images WHERE hash=? AND status='ok' AND vector IS NOT NULL "
                              "LIMIT 1", (digest,)).fetchone()
        return (int(row[0]), np.frombuffer(row[1], np.float32).copy()) if row else None

    def close(self) -> None:
        """Close every thread's connection (the last one closed checkpoints the write-ahead log)."""
        self._conns.close()

    # -- settings ----------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any, db: sqlite3.Connection | None = None) -> None:
        """Set ``key`` (inside transaction ``db``, or in one of its own)."""
        if db is not None:
            db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, json.dumps(value)))
            return
        with self.tx() as own:
            own.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- images ------------------------------------------------------------------------------
    def by_path(self, path: str) -> ImageRow | None:
        row = self.db.execute(f"SELECT {self.columns} FROM images WHERE path=?", (path,)).fetchone()
        return ImageRow(*row) if row else None

    def get(self, image_id: int) -> ImageRow | None:
        row = self.db.execute(f"SELECT {self.columns} FROM images WHERE id=?", (int(image_id),)).fetchone()
        return ImageRow(*row) if row else None

    def rows(self, ids: Iterable[int]) -> dict[int, ImageRow]:
        ids = [int(i) for i in ids]
        out: dict[int, ImageRow] = {}
        for s in range(0, len(ids), 500):
            chunk = ids[s:s + 500]
            q = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT {self.columns} FROM images WHERE id IN ({q})", chunk):
                out[row[0]] = ImageRow(*row)
        return out

    def put_ok(self, db: sqlite3.Connection, path: str, size: int, mtime: float, digest: str,
               width: int, height: int, vector: np.ndarray, meta: dict[str, Any] | None = None) -> int:
        """Insert or replace the row of ``path`` (keeping its id) inside transaction ``db``;
        ``meta``: the metadata columns (``engine.metadata.row_metadata``)."""
        from lookalike.engine.metadata import row_metadata

        blob = np.ascontiguousarray(vector, np.float32).tobytes()
        m = meta if meta is not None else row_metadata(path, mtime, None)
        extra = (m.get("taken"), m.get("camera"), m.get("type"), m.get("folder"))
        row = db.execute("SELECT id FROM images WHERE path=?", (path,)).fetchone()
        if row:
            db.execute("UPDATE images SET size=?, mtime=?, hash=?, status='ok', error=NULL, width=?, height=?,"
                       " vector=?, added=?, taken=?, camera=?, type=?, folder=? WHERE id=?",
                       (size, mtime, digest, width, height, blob, time.time(), *extra, row[0]))
            return int(row[0])
        cur = db.execute("INSERT INTO images(path, size, mtime, hash, status, width, height, vector, added,"
                         " taken, camera, type, folder) VALUES (?, ?, ?, ?, 'ok', ?, ?, ?, ?, ?, ?, ?, ?)",
                         (path, size, mtime, digest, width, height, blob, time.time(), *extra))
        return int(cur.lastrowid)

    def put_error(self, db: sqlite3.Connection, path: str, size: int | None, mtime: float | None,
                  reason: str) -> int:
        from lookalike.engine.metadata import row_metadata

        m = row_metadata(path, mtime, None)
        extra = (m["taken"], m["type"], m["folder"])
        row = db.execute("SELECT id FROM images WHERE path=?", (path,)).fetchone()
        if row:
            db.execute("UPDATE images SET size=?, mtime=?, hash=NULL, status='error', error=?, vector=NULL,"
                       " added=?, taken=?, camera=NULL, type=?, folder=? WHERE id=?",
                       (size, mtime, reason, time.time(), *extra, row[0]))
            return int(row[0])
        cur = db.execute("INSERT INTO images(path, size, mtime, status, error, added, taken, type, folder)"
                         " VALUES (?, ?, ?, 'error', ?, ?, ?, ?, ?)", (path, size, mtime, reason, time.time(), *extra))
        return int(cur.lastrowid)

    def delete(self, db: sqlite3.Connection, ids: Iterable[int]) -> None:
        ids = [(int(i),) for i in ids]
        db.executemany("DELETE FROM images WHERE id=?", ids)
        db.executemany("DELETE FROM image_hashes WHERE id=?", ids)

    def put_hashes(self, db: sqlite3.Connection, image_id: int, pixels: str | None, phash: bytes | None) -> None:
        """Record (or, with no pixels, forget) an image's fingerprints inside transaction ``db``."""
        if pixels is None:
            db.execute("DELETE FROM image_hashes WHERE id=?", (int(image_id),))
        else:
            db.execute("INSERT OR REPLACE INTO image_hashes(id, pixels, phash) VALUES (?, ?, ?)",
                       (int(image_id), pixels, phash))

    def has_hashes(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='image_hashes'").fetchone() \
            is not None

    def hashes(self) -> dict[int, tuple[str, bytes]]:
        """Stored fingerprints of the indexed images: id -> (pixel digest, 8 pHashes as bytes)."""
        if not self.has_hashes():
            return {}
        return {int(i): (p, h) for i, p, h in self.db.execute(
            "SELECT h.id, h.pixels, h.phash FROM image_hashes h JOIN images i ON i.id = h.id "
            "WHERE i.status='ok' AND h.pixels IS NOT NULL")}

    def ok_ids(self) -> np.ndarray:
        return np.array([r[0] for r in self.db.execute("SELECT id FROM images WHERE status='ok'")], np.int64)

    def iter_vectors(self, batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, raw vectors) of every indexed image, in batches."""
        last = -1
        while True:
            rows = self.db.execute("SELECT id, vector FROM images WHERE status='ok' AND id>? ORDER BY id LIMIT ?",
                                   (last, batch)).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], np.int64)
            yield ids, np.stack([np.frombuffer(r[1], np.float32) for r in rows])
            last = int(ids[-1])

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        out: dict[int, np.ndarray] = {}
        for s in range(0, len(ids), 500):
            chunk = ids[s:s + 500]
            q = ",".join("?" * len(chunk))
            for i, blob in self.db.execute(f"SELECT id, vector FROM images WHERE id IN ({q}) AND status='ok'", chunk):
                out[i] = np.frombuffer(blob, np.float32).copy()
        return out

    def paths_under(self, roots: Iterable[str]) -> list[tuple[int, str]]:
        """(id, path) of every row at or under the roots, each once (roots may nest)."""
        out: dict[int, str] = {}
        for root in roots:
            root = root.rstrip("/") or "/"
            prefix = root if root.endswith("/") else root + "/"
            for i, p in self.db.execute("SELECT id, path FROM images WHERE path=? OR path LIKE ? ESCAPE '\\'",
                                        (root, _like_prefix(prefix))):
                out[int(i)] = p
        return sorted(out.items())

    def paths(self, ids: Iterable[int]) -> dict[int, str]:
        return {i: r.path for i, r in self.rows(ids).items()}

    def counts(self) -> dict[str, int]:
        c = dict(self.db.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
        return {"ok": int(c.get("ok", 0)), "error": int(c.get("error", 0))}

    def errors(self, limit: int = 1000) -> list[tuple[str, str]]:
        return self.db.execute("SELECT path, error FROM images WHERE status='error' ORDER BY path LIMIT ?",
                               (limit,)).fetchall()


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class _Tx:
    """``with catalog.tx() as db:`` — one IMMEDIATE transaction, committed or rolled back."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type:
            self.conn.execute("ROLLBACK")
            return
        self.conn.execute("INSERT INTO settings(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
                          "DO UPDATE SET value = CAST(value AS INTEGER) + 1")
        self.conn.execute("COMMIT")
