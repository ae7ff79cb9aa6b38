"""An index that a server can search while images are being added, here or by another process.

* ``RWLock``: many searches at once, or one store mutation; a waiting writer is served first.
* ``SyncStore``: the vector store behind that lock (``add``/``remove`` exclusive, reads shared).
  Extraction happens before ``store.add`` and outside the lock, so a search never waits for it.
* ``LiveIndex``: an ``Index`` whose whole ranking (first stage and re-rank steps) runs under one
  read lock, whose writes are serialised inside the process, and which follows changes made by
  another process (``lookalike index`` on the same folder): at most every ``reload_every`` seconds
  a request compares a cheap catalog signature (count, max id, max ``added`` time of the indexed
  rows) with the last one seen and, when it moved, brings the in-memory store in line with the
  catalog (the source of truth): rows gone are removed, new or re-described rows (re)added.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..api import AddReport, Index
from ..index.base import VectorStore

log = logging.getLogger(__name__)


class RWLock:
    """A readers-writer lock; a thread that already holds it (either way) may read again."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer: int | None = None
        self._waiting = 0
        self._local = threading.local()

    @contextmanager
    def read(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0 and self._writer != threading.get_ident():
            with self._cond:
                while self._writer is not None or self._waiting:
                    self._cond.wait()
                self._readers += 1
            counted = True
        else:
            counted = False
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if counted:
                with self._cond:
                    self._readers -= 1
                    if not self._readers:
                        self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer is not None or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._cond.notify_all()


class SyncStore(VectorStore):
    """A ``VectorStore`` guarded by an ``RWLock``: mutations are exclusive, reads shared."""

    def __init__(self, inner: VectorStore, lock: RWLock) -> None:
        self.inner, self.lock = inner, lock

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.inner.dim

    @property
    def metric(self) -> str:  # type: ignore[override]
        return self.inner.metric

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self.lock.write():
            self.inner.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        with self.lock.write():
            return self.inner.remove(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self.lock.read():
            return self.inner.search(queries, k)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        with self.lock.read():
            return self.inner.reconstruct(ids)

    def ids(self) -> np.ndarray:
        with self.lock.read():
            return self.inner.ids()

    def save(self, path: Path) -> None:
        with self.lock.read():
            self.inner.save(path)

    @classmethod
    def load(cls, path: Path) -> VectorStore:  # pragma: no cover - stores are loaded unwrapped
        raise NotImplementedError("load the inner store, then wrap it")

    def __len__(self) -> int:
        with self.lock.read():
            return len(self.inner)

    def __getattr__(self, name: str) -> Any:  # backend extras (nprobe, train, ...)
        return getattr(self.inner, name)


class LiveIndex(Index):
    """An existing index opened for serving: concurrent searches, serialised writes, reloads."""

    def __init__(self, directory: str | Path, reload_every: float = 2.0) -> None:
        self.rw = RWLock()
        super().__init__(directory, create=False)
        self.writing = threading.Lock()  # one add/remove at a time in this process
        self.reload_every = reload_every
        self._checked = time.monotonic()
        self._sig = self.signature()
        self._last_added = self._sig[2]
        self.reloads = 0
        ranking = self.pipeline.search

        def locked_search(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
            with self.rw.read():  # one consistent store for the first stage and every re-rank step
                return ranking(*args, **kwargs)

        self.pipeline.search = locked_search  # type: ignore[method-assign]
        self.warm_up()

    def warm_up(self) -> None:
        """Describe a small image once, so that lazily built models exist before concurrent queries."""
        self.pipeline.describe([np.full((64, 64, 3), 128, np.uint8)])

    # -- the store, always behind the lock ------------------------------------------------------
    def _wrap(self, store: VectorStore) -> SyncStore:
        return store if isinstance(store, SyncStore) else SyncStore(store, self.rw)

    def _open_store(self) -> VectorStore:
        return self._wrap(super()._open_store())

    def _rebuild_store(self, n_expected: int | None = None) -> VectorStore:
        with self.rw.write():  # re-rank steps are refitted here: no search may run meanwhile
            return self._wrap(super()._rebuild_store(n_expected))

    # -- writes ----------------------------------------------------------------------------------
    def add_files(self, paths: Iterable[str], on_error: Callable[[str, str], None] | None = None) -> AddReport:
        """Index files (never pruning); raises ``IndexError_`` while another process writes."""
        with self.writing:
            return self.add(list(paths), prune=False, on_error=on_error)

    def remove_one(self, image_id: int) -> int:
        with self.writing:
            return self.remove_ids([image_id])

    # -- following other writers -----------------------------------------------------------------
    def signature(self) -> tuple[int, int, float]:
        """(count, max id, max added time) of the indexed rows: moves with any catalog change."""
        n, top, added = self.catalog.db.execute(
            "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(MAX(added), 0) FROM images WHERE status='ok'"
        ).fetchone()
        return int(n), int(top), float(added)

    def maybe_reload(self, force: bool = False) -> bool:
        """Bring the store in line with the catalog if it changed; cheap when nothing did."""
        now = time.monotonic()
        if not force and now - self._checked < self.reload_every:
            return False
        if not self.writing.acquire(blocking=False):  # our own write is running: check later
            return False
        try:
            self._checked = now
            sig = self.signature()
            if sig == self._sig:
                return False
            try:
                self._follow_catalog()
            except Exception:  # noqa: BLE001 - keep serving the current state; retried next time
                log.exception("could not follow the catalog's changes; serving the previous state")
                return False
            self._sig = sig
            self.reloads += 1
            return True
        finally:
            self.writing.release()

    def _follow_catalog(self) -> None:
        if self.pipeline.needs_fit and self.state_dir.exists():
            self.pipeline.load_state(self.state_dir)
        if self.pipeline.transforms_database:
            self.store = self._rebuild_store()
            return
        since, newest = self._last_added, self.signature()[2]
        want = set(self.catalog.ok_ids().tolist())
        have = set(self.store.ids().tolist())
        changed = {r[0] for r in self.catalog.db.execute(
            "SELECT id FROM images WHERE status='ok' AND added >= ?", (since,))}
        drop = np.array(sorted((have - want) | (changed & have)), np.int64)
        vecs = self.catalog.vectors(sorted((want - have) | changed))
        ids = np.array(list(vecs), np.int64)
        prepared = self._vectors_for_store(ids, np.stack(list(vecs.values()))) if len(ids) else None
        store = self.store
        assert isinstance(store, SyncStore)
        with self.rw.write():  # one exclusive step: a search sees the old state or the new one
            if len(drop):
                store.inner.remove(drop)
            if prepared is not None:
                store.inner.add(ids, prepared)
        self._last_added = newest
