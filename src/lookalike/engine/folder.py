"""The index folder: its files, the writers' lock, and the stamp of the saved derived state.

    catalog.sqlite      the source of truth (engine.catalog): images, settings, extension tables
    vectors.faiss       the vector store (a cache of the catalog's vectors, repaired on open)
    state/              learned post-processing, vocabularies, re-rank steps' offline parts
    state/stamp.json    which catalog generation the saved store and state belong to
    thumbs.sqlite       thumbnails by content hash (engine.thumbs)
    write.lock          held by the one process that writes
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lookalike.errors import BusyError


class IndexFolder:
    CATALOG = "catalog.sqlite"
    STORE = "vectors.faiss"
    STATE = "state"
    STAMP = "stamp.json"
    LOCK = "write.lock"
    THUMBS = "thumbs.sqlite"
    LEGACY_LOCAL_FEATURES = "local_features.sqlite"  # lookalike 0.2 kept local features here

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def catalog(self) -> Path:
        return self.path / self.CATALOG

    @property
    def store(self) -> Path:
        return self.path / self.STORE

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def thumbs(self) -> Path:
        return self.path / self.THUMBS

    def exists(self) -> bool:
        return self.catalog.exists()

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the writers' lock (``BusyError`` when another process holds it)."""
        f = open(self.path / self.LOCK, "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise BusyError(f"{self.path} is being written by another process (lookalike index, remove "
                            "or serve): wait for it to finish, then run this again") from None
        try:
            yield
        finally:
            f.close()

    # -- the stamp: saved store and state belong to this catalog generation ----------------------
    def read_stamp(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.state / self.STAMP).read_text())
        except (OSError, ValueError):
            return None

    def write_stamp(self, generation: int, newest_added: float) -> None:
        self.state.mkdir(exist_ok=True)
        tmp = self.state / (self.STAMP + ".tmp")
        tmp.write_text(json.dumps({"generation": generation, "newest_added": newest_added}))
        os.replace(tmp, self.state / self.STAMP)

    def drop_stamp(self) -> None:
        """Before the saved store or state changes: a crash midway then reads as 'not saved'."""
        try:
            (self.state / self.STAMP).unlink()
        except FileNotFoundError:
            pass

    def drop_store(self) -> None:
        """Delete the saved store (the next save writes another kind; the catalog can rebuild it)."""
        p = self.store
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
