"""The one writer of an index: every add, update, remove and store change goes through it.

A batch is applied in one step that searches in this process never see half-done (the index's
read-write lock): one catalog transaction with the images' rows and every extension's rows
(text, local features), then the vector store and the re-rank steps' offline parts (kNN graphs,
DBA vectors) follow the same adds and removes. Thumbnails (``engine.thumbs``) are committed
before the transaction that names them and deleted after the one that drops their last image.
Slow per-image work (description, OCR, keypoints, thumbnails) happens before, outside the
lock. The store and the steps' state are saved at the end of a run (and every minute during a
long one) with a stamp naming the catalog generation they belong to; a run killed before that
leaves an index whose next open repairs them from the catalog.
"""
from __future__ import annotations

import logging

import glob
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from lookalike.engine.files import as_paths, walk
from lookalike.engine.metadata import add_columns, has_columns
from lookalike.engine.results import AddReport
from lookalike.engine.runners import LocalRunner, Result, describer_key, process_batch
from lookalike.engine.thumbs import THUMB_SIDE, ThumbStore, make_thumbnail
from lookalike.errors import BadInputError
from lookalike.io import ImageError, decode, load_image, read_file
from lookalike.pipelines.extension import WriteContext

if TYPE_CHECKING:
    from lookalike.engine.index import Index

log = logging.getLogger(__name__)

SAVE_EVERY_S = 60.0  # bounds the work a crash makes the next open redo
FIT_SAMPLE = 2000  # images that learned post-processing (whitening, vocabularies) is fitted on


class Writer:
    def __init__(self, index: "Index") -> None:
        self.ix = index
        self.mutex = threading.Lock()  # one write at a time inside this process
        self._state_version = 0
        self._schema_ready = False
        self.thumbs = ThumbStore(index.folder.thumbs, readonly=index.readonly)
        self._thumbed: set[str] = set()  # hashes with a stored thumbnail, read at the start of a run

    # -- adding ----------------------------------------------------------------------------------
    def add(self, paths: str | os.PathLike | Iterable[str | os.PathLike], exclude: Sequence[str] = (),
            batch_size: int = 32, prune: bool = False, runner: Any = None,
            progress: Callable[[int, int], None] | None = None,
            on_error: Callable[[str, str], None] | None = None) -> AddReport:
        """Index image files and folders incrementally: new or changed files are described,
        unchanged ones skipped, and (with ``prune``) vanished files under the folders removed."""
        if batch_size < 1:
            raise BadInputError(f"batch size must be at least 1 (got {batch_size})")
        t0 = time.perf_counter()
        rep = AddReport()
        roots = as_paths(paths)

        def err(p: str, reason: str) -> None:
            rep.failed.append((p, reason))
            if on_error:
                on_error(p, reason)

        with self._writing():
            legacy = glob.escape(os.path.abspath(self.ix.folder.path / "thumbs"))  # older servers' thumbnails
            files = list(dict.fromkeys(walk(roots, [*exclude, legacy], err)))  # roots may overlap
            self._thumbed = self.thumbs.digests()
            todo, unthumbed = self._changed(files, rep, err)
            if prune:
                present = set(files)
                gone = [i for i, p in self.ix.catalog.paths_under(roots)
                        if p not in present and not os.path.lexists(p)]
                rep.removed += self._remove_ids(gone)
            self._describe(todo, batch_size, runner, rep, err, progress)
            self._make_thumbs(unthumbed)
            self._sweep_thumbs()
            self.tune()
            self.save()
        rep.seconds = time.perf_counter() - t0
        return rep

    def _changed(self, files: list[str], rep: AddReport,
                 err: Callable[[str, str], None]) -> tuple[list[str], list[tuple[str, str]]]:
        """The files to describe (new, or changed size or mtime), and the unchanged ones whose
        thumbnail is missing (path, hash: an index made before thumbnails); stat failures recorded."""
        todo, failed, unthumbed = [], [], []
        for p in files:
            row = self.ix.catalog.by_path(p)
            try:
                st = os.stat(p)
            except OSError as e:
                reason = "file not found" if isinstance(e, FileNotFoundError) else \
                    f"cannot stat file ({e.strerror or e})"
                failed.append((p, reason))
                continue
            if row and row.size == st.st_size and row.mtime == st.st_mtime:
                rep.unchanged += 1
                if row.status == "error":
                    rep.failed.append((p, row.error or "error"))
                elif row.hash and row.hash not in self._thumbed:
                    unthumbed.append((p, row.hash))
                continue
            todo.append(p)
        if failed:
            self._apply([Result(p, None, None, None, error=r) for p, r in failed], rep, err)
        return todo, unthumbed

    def _make_thumbs(self, unthumbed: list[tuple[str, str]]) -> None:
        """Thumbnails of indexed files that have none (read again, and only while their content
        is still the indexed one)."""
        def one(item: tuple[str, str]) -> tuple[str, bytes | None]:
            path, digest = item
            try:
                data = read_file(path)
                if hashlib.sha1(data).hexdigest() == digest:
                    return digest, make_thumbnail(decode(data, path, max_side=2 * THUMB_SIDE))
            except ImageError:
                pass  # no thumbnail: the server makes one in memory when asked, or shows none
            return digest, None
        if unthumbed:
            log.info("making the thumbnails of %d indexed images", len(unthumbed))
            with ThreadPoolExecutor(2) as pool:
                for s in range(0, len(unthumbed), 64):
                    self._put_thumbs({d: t for d, t in pool.map(one, unthumbed[s:s + 64]) if t})

    def _describe(self, todo: list[str], batch_size: int, runner: Any, rep: AddReport,
                  err: Callable[[str, str], None], progress: Callable[[int, int], None] | None) -> None:
        if not todo:
            return
        ix = self.ix
        if ix.pipeline.needs_fit:
            self._fit(todo)
        n = len(ix.store) + len(todo)
        if len(ix.store) == 0 and ix.pipeline.store_factory is None:
            self._swap_store(ix.stores.new(ix.store.dim, n_expected=len(todo)))
        elif ix.stores.outgrown(ix.store, n):
            self._swap_store(ix.stores.rebuild(n_expected=n))
            ix.folder.drop_store()
        local = runner is None or isinstance(runner, LocalRunner)
        runner = runner or LocalRunner()
        state_dir = str(ix.folder.state) if ix.folder.state.exists() else None
        fn = partial(process_batch, describer_key(ix.pipeline.document), state_dir,
                     known=ix.catalog.by_hash if local else None,
                     state_version=f"{id(ix)}:{self._state_version}",
                     thumbs=True, have_thumb=self._thumbed.__contains__ if local else None)
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        done, last_save = 0, time.monotonic()
        for results in runner.map(fn, batches):
            self._apply(results, rep, err)
            done += len(results)
            if progress:
                progress(done, len(todo))
            if time.monotonic() - last_save > SAVE_EVERY_S:
                self.save()
                last_save = time.monotonic()

    def _fit(self, todo: list[str]) -> None:
        """Learn what the pipeline learns from the collection (whitening, a vocabulary) on a
        sample of it, before describing it all; saved at once (descriptions depend on it)."""
        rng = np.random.default_rng(0)
        pick = sorted(rng.choice(len(todo), min(FIT_SAMPLE, len(todo)), replace=False).tolist())
        t0 = time.perf_counter()
        log.info("learning what %s learns from the collection (a vocabulary, a whitening) on %d images, "
                 "once per index...", self.ix.pipeline.name, len(pick))
        images = []
        for i in pick:
            try:
                images.append(load_image(todo[i], max_side=1024))
            except ImageError:
                continue
        self.ix.pipeline.fit(images)
        log.info("learned in %.1f s", time.perf_counter() - t0)
        self.ix.folder.state.mkdir(exist_ok=True)
        self.ix.pipeline.save_state(self.ix.folder.state)
        self._state_version += 1

    def _apply(self, results: list[Result], rep: AddReport, err: Callable[[str, str], None]) -> None:
        """One batch: extensions' slow part first, then catalog, extensions, store and steps as one
        step for this process's searches."""
        ix = self.ix
        ctx = WriteContext(ix.folder.path, ix.catalog.get_setting)
        exts = ix.pipeline.extensions
        prepared = {r.path: [e.prepare(r, ctx) for e in exts] for r in results if r.vector is not None}
        self._put_thumbs({r.digest: r.thumb for r in results if r.vector is not None and r.thumb and r.digest})
        added_ids, added_raw, removed, old_hashes = [], [], [], []
        with ix.lock.write():
            with ix.catalog.tx() as db:
                self._ensure_schema(db)
                for r in results:
                    existed = db.execute("SELECT id, status, hash FROM images WHERE path=?", (r.path,)).fetchone()
                    if existed and existed[2] and existed[2] != r.digest:
                        old_hashes.append(existed[2])
                    if r.vector is None:
                        iid = ix.catalog.put_error(db, r.path, r.size, r.mtime, r.error or "unknown error")
                        ix.catalog.put_hashes(db, iid, None, None)
                        if existed and existed[1] == "ok":
                            removed.append(iid)
                            for e in exts:
                                e.remove(db, [iid])
                        err(r.path, r.error or "unknown error")
                        continue
                    iid = ix.catalog.put_ok(db, r.path, r.size or 0, r.mtime or 0.0, r.digest or "",
                                            r.width, r.height, r.vector, r.meta)
                    ix.catalog.put_hashes(db, iid, r.pixels, r.phash)
                    if existed and existed[1] == "ok":
                        removed.append(iid)
                        rep.updated += 1
                    else:
                        rep.added += 1
                    if r.same_as is not None:
                        rep.reused += 1
                    added_ids.append(iid)
                    added_raw.append(r.vector)
                    for e, prep in zip(exts, prepared[r.path]):
                        e.write(db, iid, r, prep, ctx)
            self._follow(added_ids, added_raw, removed)
        self._drop_thumbs(old_hashes)

    def _put_thumbs(self, thumbs: dict[str, bytes]) -> None:
        """Store a batch's thumbnails (committed before the rows that name them)."""
        self.thumbs.put_many(thumbs)
        self._thumbed.update(thumbs)

    def _drop_thumbs(self, digests: list[str]) -> None:
        """Delete the thumbnails of these hashes that no indexed image has any more (after the
        transaction that dropped them: a crash in between leaves only an unused thumbnail)."""
        db = self.ix.catalog.db
        gone = [d for d in set(digests) if d and db.execute(
            "SELECT 1 FROM images WHERE hash=? AND status='ok' LIMIT 1", (d,)).fetchone() is None]
        self.thumbs.drop(gone)
        self._thumbed.difference_update(gone)

    def _sweep_thumbs(self) -> None:
        """Delete thumbnails no indexed image has (left by a run killed between the two commits)."""
        if not self._thumbed:
            return
        used = {r[0] for r in self.ix.catalog.db.execute(
            "SELECT DISTINCT hash FROM images WHERE status='ok' AND hash IS NOT NULL")}
        unused = self._thumbed - used
        if unused:
            self.thumbs.drop(unused)
            self._thumbed -= unused

    def _ensure_schema(self, db: Any) -> None:
        if not self._schema_ready:
            if not has_columns(db):  # migration left to a later writer (this one was busy then)
                add_columns(db)
                self.ix.catalog.forget_columns()
            for e in self.ix.pipeline.extensions:
                e.schema(db)
            self._schema_ready = True

    def _follow(self, added_ids: list[int], added_raw: list[np.ndarray], removed: list[int]) -> None:
        """The store and the steps follow a committed batch (the caller holds the write lock)."""
        ix = self.ix
        ids = np.array(added_ids, np.int64)
        removed_ids = np.array(sorted(set(removed)), np.int64)
        vecs = ix.pipeline.prepare(np.stack(added_raw)) if added_raw else \
            np.zeros((0, ix.store.dim), np.float32)
        if ix.pipeline.steps:
            drop, write_ids, write_vecs = ix.pipeline.update_steps(ids, vecs, removed_ids)
        else:
            drop, write_ids, write_vecs = removed_ids, ids, vecs
        if len(drop):
            ix.store.remove(drop)
        if len(write_ids):
            ix.store.add(write_ids, write_vecs)
        ix.searcher.forget(np.concatenate([ids, removed_ids]))
        ix.generation = ix.catalog.generation()

    def _swap_store(self, store: Any) -> None:
        with self.ix.lock.write():
            self.ix.store = store

    # -- removing --------------------------------------------------------------------------------
    def remove(self, paths: str | os.PathLike | Iterable[str | os.PathLike]) -> int:
        """Remove files (or every file under a folder) from the index; returns how many."""
        roots = as_paths(paths)
        with self._writing():
            n = self._remove_ids([i for i, _ in self.ix.catalog.paths_under(roots)])
            self.save()
            return n

    def remove_ids(self, ids: Iterable[int]) -> int:
        ids = sorted({int(i) for i in ids})
        with self._writing():
            have = set(self.ix.catalog.rows(ids))
            n = self._remove_ids([i for i in ids if i in have])
            self.save()
            return n

    def _remove_ids(self, ids: list[int]) -> int:
        if not ids:
            return 0
        ix = self.ix
        ok = set(ix.catalog.ok_ids().tolist())
        hashes = [r.hash for r in ix.catalog.rows(ids).values() if r.hash]
        with ix.lock.write():
            with ix.catalog.tx() as db:
                ix.catalog.delete(db, ids)
                for e in ix.pipeline.extensions:
                    e.remove(db, ids)
            self._follow([], [], [i for i in ids if i in ok])
        self._drop_thumbs(hashes)
        return len(ids)

    # -- other writes ----------------------------------------------------------------------------
    def change_store(self, spec: str) -> None:
        """Rebuild the vector store as ``spec`` (``store.factory.make_store``) and keep it; an
        ``auto`` spec that changes only the recall target (or a budget the store still fits) keeps
        the store and tunes it again."""
        from lookalike.pipelines.spec import PipelineDoc

        ix = self.ix
        with self._writing():
            old = ix.stores.spec
            keep = ix.stores.fits(ix.store, spec)
            ix.stores.spec = spec
            try:
                store = ix.store if keep else ix.stores.rebuild()
                ix.stores.tune(store, force=True, exclusive=ix.lock.write)
            except Exception:
                ix.stores.spec = old
                raise
            doc: PipelineDoc = ix.pipeline.document
            doc.store = spec
            with ix.lock.write():
                with ix.catalog.tx() as db:
                    ix.catalog.set_setting("document", doc.to_dict(), db)
                ix.store = store
                ix.generation = ix.catalog.generation()
            if not keep:
                ix.folder.drop_store()
            self.save()

    def compact(self) -> dict[str, Any]:
        """Rebuild approximate stores without removed vectors (HNSW tombstones, IVF dead rows)."""
        ix = self.ix
        with self._writing():
            compact = getattr(ix.store, "compact", None)
            with ix.lock.write():
                dropped = int(compact()) if compact is not None else 0
            self.save()
        return {"store": type(ix.store).__name__, "spec": ix.stores.spec, "vectors": len(ix.store),
                "dropped": dropped}

    def set_setting(self, key: str, value: Any) -> None:
        with self._writing():
            ix = self.ix
            with ix.catalog.tx() as db:
                ix.catalog.set_setting(key, value, db)
            ix.generation = ix.catalog.generation()
            self.save()

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(db)`` inside one write transaction (e.g. tagging, training the text bridge)."""
        with self._writing():
            ix = self.ix
            with ix.lock.write():
                with ix.catalog.tx() as db:
                    self._ensure_schema(db)
                    out = fn(db)
                ix.generation = ix.catalog.generation()
            self.save()
            return out

    def tune(self) -> None:
        """Tune an ``auto`` store's search knobs when it is new or has grown (see ``StoreManager.tune``);
        searches wait only while candidate settings are tried."""
        self.ix.stores.tune(self.ix.store, exclusive=self.ix.lock.write)

    def save(self) -> None:
        self.ix.stores.save(self.ix.store)

    def flush(self) -> None:
        """Save the store and state under the writers' locks (after a write stopped midway)."""
        with self._writing():
            self.save()

    def _writing(self):
        if self.ix.readonly:
            raise BadInputError(f"{self.ix.folder.path} was opened read-only")
        return _Both(self.mutex, self.ix.folder.write_lock())


class _Both:
    """The in-process mutex, then the cross-process lock."""

    def __init__(self, mutex: threading.Lock, lock: Any) -> None:
        self.mutex, self.lock = mutex, lock

    def __enter__(self) -> None:
        self.mutex.acquire()
        try:
            self.lock.__enter__()
        except BaseException:
            self.mutex.release()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self.lock.__exit__(*exc)
        finally:
            self.mutex.release()
