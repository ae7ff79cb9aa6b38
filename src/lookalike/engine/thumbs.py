"""Thumbnails kept with the index, so that a gallery never decodes an original to show it.

The writer makes one when it has just decoded an image to describe it (``runners.process_batch``)
and stores it in ``thumbs.sqlite`` in the index folder, keyed by the image's content hash: files
with the same content share one thumbnail, and a thumbnail never goes stale (new content, new key).
A batch's thumbnails are committed before the catalog transaction that names them, so a crash
leaves at worst an unreferenced thumbnail; the writer deletes one once no indexed image has its
hash. Searches only read them. (One SQLite file rather than a file per thumbnail: a batch is one
transaction, about 15 times cheaper than writing and renaming small files, and a folder of 100,000
tiny files is slow to copy and back up.)
"""
from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from lookalike.engine.catalog import ThreadConnections

THUMB_SIDE = 256  # long side, in pixels (never upscaled)
THUMB_QUALITY = 80  # JPEG: about 10 KB a thumbnail
THUMB_TYPE = "image/jpeg"


def make_thumbnail(rgb: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """The JPEG thumbnail of an (H, W, 3) uint8 RGB image, long side at most ``side`` (OpenCV's
    area resize: about half the time of PIL's bicubic one, and as smooth when shrinking)."""
    h, w = rgb.shape[:2]
    if max(h, w) > side:
        s = side / max(h, w)
        import cv2  # on first use: a search process never makes thumbnails

        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


class ThumbStore:
    """``thumbs.sqlite``: one table, ``thumbs(hash, data)``. Nothing is created until the first
    ``put``; a read-only store (or one whose file does not exist yet) never writes."""

    SCHEMA = "CREATE TABLE IF NOT EXISTS thumbs (hash TEXT PRIMARY KEY, data BLOB NOT NULL)"

    def __init__(self, path: str | os.PathLike, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._conns = ThreadConnections()

    def _db(self, create: bool = False) -> sqlite3.Connection | None:
        conn = self._conns.get()
        if conn is not None:
            return conn
        if not self.path.exists() and not (create and not self.readonly):
            return None
        uri = f"file:{self.path}" + ("?mode=ro" if self.readonly else "")
        conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        if not self.readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(self.SCHEMA)
        return self._conns.keep(conn)

    def read(self, digest: str | None) -> bytes | None:
        db = self._db() if digest else None
        if db is None:
            return None
        try:
            row = db.execute("SELECT data FROM thumbs WHERE hash=?", (digest,)).fetchone()
        except sqlite3.OperationalError:  # a file without the table (its creation was interrupted)
            return None
        return bytes(row[0]) if row else None

    def has(self, digest: str | None) -> bool:
        db = self._db() if digest else None
        try:
            return db is not None and db.execute("SELECT 1 FROM thumbs WHERE hash=?", (digest,)).fetchone() is not None
        except sqlite3.OperationalError:
            return False

    def put_many(self, thumbs: dict[str, bytes]) -> None:
        """Store thumbnails (those of hashes already stored are kept), in one transaction."""
        if not thumbs:
            return
        db = self._db(create=True)
        assert db is not None  # a bug in the caller: the writer's store is never read-only
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO thumbs(hash, data) VALUES (?, ?)", list(thumbs.items()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def put(self, digest: str, data: bytes) -> None:
        self.put_many({digest: data})

    def drop(self, digests: Iterable[str]) -> int:
        digests = sorted(set(digests))
        db = self._db() if digests else None
        if db is None:
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            n = sum(db.execute("DELETE FROM thumbs WHERE hash=?", (d,)).rowcount for d in digests)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return n

    def digests(self) -> set[str]:
        """The hashes of every stored thumbnail."""
        db = self._db()
        if db is None:
            return set()
        try:
            return {r[0] for r in db.execute("SELECT hash FROM thumbs")}
        except sqlite3.OperationalError:
            return set()

    def close(self) -> None:
        self._conns.close()
