"""Per-image metadata kept in the catalog for filtering: date taken, camera, pixel size, type, folder.

It comes from the file's header and EXIF (``io.image_info``) where the batch already holds the
file's bytes, so it costs no second read or decode. The date taken is EXIF ``DateTimeOriginal``
(else ``CreateDate``), else the file's modification time, as local ISO text
(``YYYY-MM-DDTHH:MM:SS``) so that SQL compares dates as strings.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from datetime import datetime
from typing import Any

from lookalike.io import ImageInfo, file_type, image_info

log = logging.getLogger(__name__)

COLUMNS = (("taken", "TEXT"), ("camera", "TEXT"), ("type", "TEXT"), ("folder", "TEXT"))
# One covering index answers every filter without reading the rows (their metadata comes after the
# descriptor BLOB, which SQLite would walk through): a range on (status, taken), a scan otherwise.
INDEXES = ("CREATE INDEX IF NOT EXISTS images_meta ON images(status, taken, folder, type, camera, width, height)",
           "CREATE INDEX IF NOT EXISTS images_folder ON images(folder, status)")


def iso_time(mtime: float | None) -> str | None:
    if mtime is None:
        return None
    try:
        return datetime.fromtimestamp(float(mtime)).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def row_metadata(path: str, mtime: float | None, info: ImageInfo | None) -> dict[str, Any]:
    """The catalog's metadata columns of one file (``width``/``height`` None when unknown)."""
    info = info or ImageInfo()
    return {"taken": info.taken or iso_time(mtime), "camera": info.camera,
            "type": info.type or file_type(os.path.basename(path)) or None,
            "folder": os.path.dirname(path), "width": info.width, "height": info.height}


def has_columns(db: sqlite3.Connection) -> bool:
    cols = {r[1] for r in db.execute("PRAGMA table_info(images)")}
    return all(c in cols for c, _ in COLUMNS)


def add_columns(db: sqlite3.Connection) -> None:
    """The metadata columns and their indexes on a catalog written before they existed."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(images)")}
    for name, kind in COLUMNS:
        if name not in cols:
            db.execute(f"ALTER TABLE images ADD COLUMN {name} {kind}")
    for sql in INDEXES:
        db.execute(sql)


def header_info(path: str, size: int | None, mtime: float | None) -> ImageInfo | None:
    """Header metadata of a file still as it was indexed (same size and mtime), else None."""
    try:
        st = os.stat(path)
        if size is not None and (st.st_size != size or (mtime is not None and st.st_mtime != mtime)):
            return None
        with open(path, "rb") as f:
            info = image_info(f, path)  # PIL reads only the header
    except OSError:
        return None
    return info if info.width else None


def fill_missing(db: sqlite3.Connection) -> int:
    """Give every row without metadata its metadata, from its file's header when the file is
    still the one indexed, else from the path and the stored mtime (by the writer only)."""
    rows = db.execute("SELECT id, path, size, mtime, status, width, height FROM images "
                      "WHERE folder IS NULL").fetchall()
    for iid, path, size, mtime, status, width, height in rows:
        info = header_info(path, size, mtime) if status == "ok" else None
        meta = row_metadata(path, mtime, info)
        db.execute("UPDATE images SET taken=?, camera=?, type=?, folder=?, width=?, height=? WHERE id=?",
                   (meta["taken"], meta["camera"], meta["type"], meta["folder"],
                    meta["width"] or width, meta["height"] or height, iid))
    if rows:
        log.info("metadata of %d indexed images filled in", len(rows))
    return len(rows)
