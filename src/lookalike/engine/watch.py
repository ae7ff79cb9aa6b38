"""Watch folders and keep an index in step with them: new, changed, moved and deleted files are
indexed as they happen, through the index's one writer (so with its batches and crash safety).

File-system events (``watchdog``: inotify, FSEvents, ...) name the paths that changed; they are
gathered until the folders have been quiet for ``debounce`` seconds (or for at most ``max_delay``
while changes keep coming), then applied in one write: paths still there are indexed (unchanged
files are skipped by size and mtime, moved files keep their vector through their content hash),
paths gone are removed. A full incremental rescan runs when watching starts and every
``rescan_every`` seconds, to catch anything the events missed; where the system cannot deliver
events (no inotify watches left), its polling observer takes over.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from lookalike.engine.files import as_paths
from lookalike.engine.results import AddReport
from lookalike.errors import BusyError, LookalikeError
from lookalike.io import is_image_name

if TYPE_CHECKING:
    from lookalike.engine.index import Index

log = logging.getLogger(__name__)

IGNORED_EVENTS = {"opened", "closed_no_write"}  # reads: nothing changed


class Stopped(Exception):
    """Raised inside a long write when watching is asked to stop (between batches)."""


class Watcher:
    """Keeps ``index`` in step with ``roots`` (folders or files) until ``stop()``.

    ``run()`` blocks (call ``start()`` for a thread of its own); ``on_report(report)`` hears of
    every write that changed something; ``ready`` is set once the first rescan is done.
    """

    def __init__(self, index: "Index", roots: str | os.PathLike | Iterable[str | os.PathLike],
                 exclude: Sequence[str] = (), debounce: float = 1.0, max_delay: float = 10.0,
                 rescan_every: float = 300.0, batch_size: int = 32,
                 on_report: Callable[[AddReport], None] | None = None,
                 on_error: Callable[[str, str], None] | None = None, polling: bool = False) -> None:
        self.index = index
        self.roots = as_paths(roots)
        self.exclude = list(exclude)
        self.debounce, self.max_delay, self.rescan_every = debounce, max_delay, rescan_every
        self.batch_size = batch_size
        self.on_report, self.on_error, self.polling = on_report, on_error, polling
        self.own = os.path.abspath(index.folder.path)  # the index's own files change as it is written
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._pending: dict[str, None] = {}
        self._first = self._last = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.writes = 0
        self.error: BaseException | None = None

    # -- events ----------------------------------------------------------------------------------
    def noticed(self, *paths: str) -> None:
        """Note paths that changed (called from the observer's thread)."""
        now = time.monotonic()
        with self._lock:
            for p in paths:
                if p and self._relevant(p):
                    if not self._pending:
                        self._first = now
                    self._pending[p] = None
                    self._last = now

    def _relevant(self, path: str) -> bool:
        if path == self.own or path.startswith(self.own + os.sep):
            return False
        root = next((r for r in self.roots if path == r or path.startswith(r.rstrip(os.sep) + os.sep)), None)
        if root is None:
            return False
        p = path
        while True:  # the path, or a folder it is in, excluded
            if any(fnmatch.fnmatch(p, g) or fnmatch.fnmatch(os.path.basename(p), g) for g in self.exclude):
                return False
            if p == root or len(p) <= len(root):
                return True
            p = os.path.dirname(p)

    def _due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            if not self._pending or (now - self._last < self.debounce and now - self._first < self.max_delay):
                return []
            paths, self._pending = list(self._pending), {}
            return paths

    # -- writing ---------------------------------------------------------------------------------
    def _progress(self, done: int, total: int) -> None:
        if self._stop.is_set():
            raise Stopped

    def sync(self, paths: list[str]) -> AddReport:
        """Apply changes at ``paths``: index what is there (files, or folders moved in), remove
        what is gone (files, or every file under a folder gone)."""
        present, gone = [], []
        for p in paths:
            if os.path.isdir(p) and not os.path.islink(p):
                present.append(p)
            elif os.path.lexists(p):
                if is_image_name(p):
                    present.append(p)
            else:
                gone.append(p)
        rep = AddReport()
        if present:  # first, so that a moved file's content is still known (its vector is reused)
            rep = self.index.add(present, exclude=self.exclude, batch_size=self.batch_size, prune=True,
                                 progress=self._progress, on_error=self.on_error)
        indexed = [p for p in gone if self.index.catalog.paths_under([p])]
        if indexed:
            rep.removed += self.index.remove(indexed)
        return rep

    def rescan(self) -> AddReport:
        """Index the roots incrementally and remove what vanished under them."""
        present = [r for r in self.roots if os.path.lexists(r)]
        rep = self.index.add(present, exclude=self.exclude, batch_size=self.batch_size, prune=True,
                             progress=self._progress, on_error=self.on_error) if present else AddReport()
        gone = [r for r in self.roots if r not in present and self.index.catalog.paths_under([r])]
        if gone:
            rep.removed += self.index.remove(gone)
        return rep

    def _write(self, fn: Callable[[], AddReport], paths: list[str] | None = None) -> bool:
        """One write; on a busy index (another process writing) the paths wait for the next try."""
        try:
            rep = fn()
        except BusyError as e:
            log.warning("%s; trying again shortly", e)
            if paths:
                self.noticed(*paths)
            return False
        except Stopped:  # between two batches: what was written is kept; save it
            try:
                self.index.writer.flush()
            except BusyError:
                pass
            return False
        except LookalikeError as e:
            log.error("could not apply changes: %s", e)
            return False
        self.writes += 1
        if self.on_report and (rep.added or rep.updated or rep.removed or rep.failed):
            self.on_report(rep)
        return True

    # -- running ---------------------------------------------------------------------------------
    def _observer(self) -> Any:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in IGNORED_EVENTS or (event.is_directory and event.event_type == "modified"):
                    return
                watcher.noticed(os.fsdecode(event.src_path), os.fsdecode(event.dest_path or b""))

        def make(kind: Any) -> Any:
            obs = kind()
            for root in self.roots:
                folder = root if os.path.isdir(root) else os.path.dirname(root)
                obs.schedule(Handler(), folder, recursive=os.path.isdir(root))
            obs.start()
            return obs

        if not self.polling:
            try:
                return make(Observer)
            except OSError as e:  # e.g. no inotify watches left
                log.warning("file-system events unavailable (%s): polling instead", e)
        return make(PollingObserver)

    def run(self) -> None:
        """Watch until ``stop()``: the first rescan, then events and periodic rescans."""
        missing = [r for r in self.roots if not os.path.isdir(r) and not os.path.isdir(os.path.dirname(r))]
        if missing:
            from lookalike.errors import NotFoundError

            raise NotFoundError(f"{missing[0]}: no such folder to watch")
        observer = self._observer()  # before the rescan: nothing that changes during it is missed
        try:
            self._write(self.rescan)
            last_scan = time.monotonic()
            self.ready.set()
            while not self._stop.wait(0.1):
                paths = self._due()
                if paths:
                    self._write(lambda: self.sync(paths), paths)
                elif time.monotonic() - last_scan >= self.rescan_every:
                    self._write(self.rescan)
                    last_scan = time.monotonic()
        finally:
            observer.stop()
            observer.join(timeout=10)

    def start(self) -> "Watcher":
        """Run in a thread of its own (``stop()`` ends it; ``error`` holds what ended it otherwise)."""
        def run() -> None:
            try:
                self.run()
            except BaseException as e:  # noqa: BLE001 - kept for the thread that started it
                self.error = e
                log.error("watching stopped: %s", e)
        self._thread = threading.Thread(target=run, name="lookalike-watch", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop watching (a write in progress stops after its current batch)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
