"""The Python API: ``idx = lookalike.open("idx/"); idx.add(paths); idx.search(image, k=10)``."""
from __future__ import annotations

import builtins
import fcntl
import fnmatch
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import __version__
from .index.base import VectorStore
from .index.catalog import Catalog
from .index.factory import auto_factory, load_store, make_store, store_factory
from .io import ImageError, is_image_name, load_image
from .pipeline import RENAMED_BASES, Pipeline, QueryContext, build, parse_spec, turned
from .runners import LocalRunner, Result, process_batch

STORE_FILE = "vectors.faiss"
log = logging.getLogger(__name__)


def stored_form(pipeline: Pipeline) -> Any:
    """The extractor settings as the catalog keeps them (through JSON: tuples become lists)."""
    return json.loads(json.dumps(pipeline.extractor.config()))


class IndexError_(Exception):
    """A problem with the index itself (wrong pipeline, locked, missing)."""


@dataclass
class Hit:
    id: int
    path: str
    score: float
    rank: int


@dataclass
class SearchResult:
    hits: list[Hit]
    took_ms: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"results": [asdict(h) for h in self.hits], "took_ms": round(self.took_ms, 3),
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}}


@dataclass
class AddReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d


def walk(paths: Iterable[str | os.PathLike], exclude: Sequence[str] = (),
         on_error: Callable[[str, str], None] | None = None) -> Iterator[str]:
    """Image files under ``paths`` (files are taken as given), sorted, skipping ``exclude`` globs.

    Symlinked folders are not followed (so symlink loops cannot trap the walk); broken links and
    unreadable folders are reported through ``on_error``.
    """
    def excluded(p: str) -> bool:
        return any(fnmatch.fnmatch(p, g) or fnmatch.fnmatch(os.path.basename(p), g) for g in exclude)

    for root in paths:
        root = os.path.abspath(os.fspath(root))
        if os.path.isfile(root) or (os.path.islink(root) and not os.path.isdir(root)):
            if not excluded(root):
                yield root
            continue
        if not os.path.isdir(root):
            if on_error:
                on_error(root, "path not found")
            continue

        def onerror(e: OSError) -> None:
            if on_error:
                on_error(e.filename or root, f"cannot list folder ({e.strerror or e})")

        for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
            dirnames[:] = sorted(d for d in dirnames if not excluded(os.path.join(dirpath, d)))
            for fn in sorted(filenames):
                p = os.path.join(dirpath, fn)
                if is_image_name(p) and not excluded(p):
                    yield p


class Index:
    """An image index in a directory: catalog (SQLite) + vector store (FAISS) + pipeline state."""

    def __init__(self, directory: str | os.PathLike, pipeline: str | None = None,
                 options: dict[str, Any] | None = None, create: bool = True, readonly: bool = False,
                 store: str | None = None) -> None:
        self.dir = Path(directory)
        if not (self.dir / "catalog.sqlite").exists():
            if not create or readonly:
                raise IndexError_(f"{self.dir}: no index here (create one with `lookalike index`)")
            self.dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(self.dir / "catalog.sqlite", readonly=readonly)
        stored = self.catalog.get_setting("pipeline")
        if stored is None:
            spec, opts = pipeline or "default", dict(options or {})
            if not readonly:
                self.catalog.set_setting("pipeline", {"spec": spec, "options": opts})
        else:
            spec, opts = stored["spec"], stored.get("options", {})
            if pipeline is not None and pipeline != spec:
                raise IndexError_(f"{self.dir} was built with pipeline {spec!r}, not {pipeline!r}: "
                                  "use another --index folder, or omit --pipeline")
            if options and {k: v for k, v in options.items() if v is not None} != opts:
                raise IndexError_(f"{self.dir} was built with options {opts}, not {options}")
        self.spec, self.options = spec, opts
        self.pipeline: Pipeline = build(spec, **opts)
        self._follow_rename(readonly)
        self.state_dir = self.dir / "state"
        if self.state_dir.exists():
            self.pipeline.load_state(self.state_dir)
        self._check_config(readonly)
        self.store: VectorStore = self._init_store(store, readonly)
        self._query_steps: dict[str, tuple[tuple[int, ...], Pipeline, VectorStore]] = {}  # per --rerank

    # -- consistency ---------------------------------------------------------------------------
    def _follow_rename(self, readonly: bool) -> None:
        """Open under its new name an index whose base pipeline has since been renamed: one built
        when ``default`` was single-scale GeM (``gem`` now) opens as ``gem``."""
        base, steps = parse_spec(self.spec)
        new = RENAMED_BASES.get(base)
        stored = self.catalog.get_setting("extractor")
        if new is None or stored is None or self.options.get("model"):
            return
        if stored_form(self.pipeline) == stored:
            return
        renamed = "+".join([new, *steps])
        pipe = build(renamed, **self.options)
        if stored_form(pipe) != stored:
            return  # neither: _check_config reports it
        log.info("%s: pipeline %r is called %r since this index was built", self.dir, base, new)
        if not readonly:
            self.catalog.set_setting("pipeline", {"spec": renamed, "options": self.options})
        self.spec, self.pipeline = renamed, pipe

    def _check_config(self, readonly: bool) -> None:
        cfg = stored_form(self.pipeline)
        stored = self.catalog.get_setting("extractor")
        if stored is None and not readonly:
            self.catalog.set_setting("extractor", cfg)
            self.catalog.set_setting("versions", {"lookalike": __version__})
        elif stored is not None and stored != cfg:
            raise IndexError_(f"{self.dir}: the index was built with extractor settings {stored}, "
                              f"but this version describes images with {cfg}: rebuild the index")

    def _init_store(self, spec: str | None, readonly: bool) -> VectorStore:
        """Open the vector store; a ``spec`` (``index.factory.make_store``) other than the one
        kept in the catalog rebuilds it from the catalog's vectors."""
        stored = self.catalog.get_setting("store")
        self.store_spec = spec or stored or "auto"
        if stored is None or spec is None or spec == stored:
            store = self._open_store()
        else:
            store = self._rebuild_store()
            if not readonly:
                self._drop_saved_store()
        if not readonly and stored != self.store_spec:
            self.catalog.set_setting("store", self.store_spec)
        return store

    def _drop_saved_store(self) -> None:
        """Delete the saved store so the next save writes another kind (the catalog can rebuild
        it if a crash comes first)."""
        p = self.dir / STORE_FILE
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    def _vectors_for_store(self, ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
        return self.pipeline.prepare(raw)

    def _open_store(self) -> VectorStore:
        """Load the FAISS file and repair it against the catalog (the source of truth)."""
        path = self.dir / STORE_FILE
        store = None
        if path.exists():
            try:
                store = load_store(path)
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt from the catalog
                store = None
        if self.pipeline.transforms_database:
            return self._rebuild_store()
        if store is None:
            return self._rebuild_store()
        want = set(self.catalog.ok_ids().tolist())
        have = set(store.ids().tolist())
        extra = np.array(sorted(have - want), np.int64)
        missing = sorted(want - have)
        if len(extra):
            store.remove(extra)
        if missing:
            vecs = self.catalog.vectors(missing)
            ids = np.array(list(vecs), np.int64)
            if len(ids):
                store.add(ids, self._vectors_for_store(ids, np.stack(list(vecs.values()))))
        return store

    def _new_store(self, dim: int, n_expected: int | None = None) -> VectorStore:
        if self.store_spec == "flat":
            return self.pipeline.make_store(dim)
        metric = "l2" if self.pipeline.metric == "l2" else "ip"
        return make_store(self.store_spec, dim, metric, n_expected=n_expected)

    def _rebuild_store(self, n_expected: int | None = None) -> VectorStore:
        ids_all, raws = [], []
        for ids, raw in self.catalog.iter_vectors():
            ids_all.append(ids)
            raws.append(raw)
        if not ids_all:
            dim = int(self.pipeline.prepare(np.zeros((1, self.pipeline.extractor.dim), np.float32)).shape[1])
            return self._new_store(dim)
        ids = np.concatenate(ids_all)
        vecs = self.pipeline.prepare(np.concatenate(raws))
        if self.pipeline.steps:
            vecs = self.pipeline.fit_steps(ids, vecs)
        store = self._new_store(vecs.shape[1], n_expected=max(len(ids), n_expected or 0))
        store.add(ids, vecs)
        return store

    def save(self) -> None:
        self.store.save(self.dir / STORE_FILE)
        self.state_dir.mkdir(exist_ok=True)
        self.pipeline.save_state(self.state_dir)

    # -- writing ---------------------------------------------------------------------------------
    def _lock(self):
        f = builtins.open(self.dir / "write.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise IndexError_(f"{self.dir} is being written by another process") from None
        return f

    def add(self, paths: Iterable[str | os.PathLike], exclude: Sequence[str] = (), batch_size: int = 32,
            prune: bool = False, runner: Any = None, progress: Callable[[int, int], None] | None = None,
            on_error: Callable[[str, str], None] | None = None) -> AddReport:
        """Index image files and folders incrementally: new or changed files are described,
        unchanged ones skipped, and (with ``prune``) vanished files under the folders removed."""
        t0 = time.perf_counter()
        rep = AddReport()
        lock = self._lock()
        try:
            def err(p: str, reason: str) -> None:
                rep.failed.append((p, reason))
                if on_error:
                    on_error(p, reason)

            roots = [os.path.abspath(os.fspath(p)) for p in paths]
            files = list(walk(roots, exclude, err))
            todo: list[str] = []
            for p in files:
                row = self.catalog.by_path(p)
                try:
                    st = os.stat(p)
                except OSError as e:
                    reason = "file not found" if isinstance(e, FileNotFoundError) else f"cannot stat file ({e.strerror or e})"
                    with self.catalog.tx() as db:
                        self.catalog.put_error(db, p, None, None, reason)
                    err(p, reason)
                    continue
                if row and row.size == st.st_size and row.mtime == st.st_mtime:
                    rep.unchanged += 1
                    if row.status == "error":
                        rep.failed.append((p, row.error or "error"))
                    continue
                todo.append(p)
            if prune:
                present = set(files)
                gone = [(i, p) for i, p in self.catalog.paths_under(roots) if p not in present and not os.path.exists(p)]
                if gone:
                    rep.removed += self._remove_ids([i for i, _ in gone])
            self._process(todo, batch_size, runner, rep, err, progress)
            if self.pipeline.transforms_database and (rep.added or rep.updated or rep.removed):
                self.store = self._rebuild_store()
            self.save()
        finally:
            lock.close()
        rep.seconds = time.perf_counter() - t0
        return rep

    def _process(self, todo: list[str], batch_size: int, runner: Any, rep: AddReport,
                 err: Callable[[str, str], None], progress: Callable[[int, int], None] | None) -> None:
        if not todo:
            return
        if self.pipeline.needs_fit:
            self._fit_pipeline(todo)
        if self.store_spec == "auto":  # the size is known now: choose again
            n = len(self.store) + len(todo)
            if len(self.store) == 0:
                self.store = self._new_store(self.store.dim, n_expected=len(todo))
            elif not getattr(self.pipeline, "custom_store", False) and \
                    auto_factory(n, self.store.dim) != store_factory(self.store):  # outgrown
                self.store = self._rebuild_store(n_expected=n)
                self._drop_saved_store()
        runner = runner or LocalRunner()
        fn = partial(process_batch, self.spec, json.dumps(self.options, sort_keys=True),
                     str(self.state_dir) if self.state_dir.exists() else None)
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        done = 0
        last_save = time.monotonic()
        for results in runner.map(fn, batches):
            self._write(results, rep, err)
            done += len(results)
            if progress:
                progress(done, len(todo))
            if time.monotonic() - last_save > 60:  # bound the work a crash makes the next open redo
                self.store.save(self.dir / STORE_FILE)
                last_save = time.monotonic()

    def _write(self, results: list[Result], rep: AddReport, err: Callable[[str, str], None]) -> None:
        """The single writer: one transaction per batch, then the store."""
        new_ids, new_raw = [], []
        self._query_steps.clear()
        with self.catalog.tx() as db:
            for r in results:
                existed = db.execute("SELECT id, status FROM images WHERE path=?", (r.path,)).fetchone()
                if r.vector is None:
                    iid = self.catalog.put_error(db, r.path, r.size, r.mtime, r.error or "unknown error")
                    if existed and existed[1] == "ok":
                        self.store.remove(np.array([iid], np.int64))
                    err(r.path, r.error or "unknown error")
                    continue
                iid = self.catalog.put_ok(db, r.path, r.size or 0, r.mtime or 0.0, r.digest or "",
                                          r.width, r.height, r.vector)
                if existed and existed[1] == "ok":
                    self.store.remove(np.array([iid], np.int64))
                    rep.updated += 1
                else:
                    rep.added += 1
                new_ids.append(iid)
                new_raw.append(r.vector)
                self._after_write(db, iid, r)
        if new_ids and not self.pipeline.transforms_database:
            ids = np.array(new_ids, np.int64)
            self.store.add(ids, self._vectors_for_store(ids, np.stack(new_raw)))

    def _after_write(self, db: Any, image_id: int, result: Result) -> None:
        """Hook for per-image extras (text sources, local features) inside the batch transaction."""
        for hook in _WRITE_HOOKS:
            hook(self, db, image_id, result)

    def _fit_pipeline(self, todo: list[str], sample: int = 2000) -> None:
        """Fit learned post-processing on a sample of the collection before describing it all."""
        rng = np.random.default_rng(0)
        pick = sorted(rng.choice(len(todo), min(sample, len(todo)), replace=False).tolist())
        images = []
        for i in pick:
            try:
                images.append(load_image(todo[i], max_side=1024))
            except ImageError:
                continue
        if hasattr(self.pipeline.extractor, "fit") and not getattr(self.pipeline.extractor, "fitted", True):
            self.pipeline.extractor.fit(images)
        if images:
            self.pipeline.fit(self.pipeline.describe(images))
        self.state_dir.mkdir(exist_ok=True)
        self.pipeline.save_state(self.state_dir)

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Remove files (or every file under a folder) from the index; returns how many."""
        lock = self._lock()
        try:
            ids = [i for i, _ in self.catalog.paths_under([os.path.abspath(os.fspath(p)) for p in paths])]
            n = self._remove_ids(ids)
            if self.pipeline.transforms_database and n:
                self.store = self._rebuild_store()
            self.save()
            return n
        finally:
            lock.close()

    def remove_ids(self, ids: Iterable[int]) -> int:
        lock = self._lock()
        try:
            n = self._remove_ids(list(ids))
            if self.pipeline.transforms_database and n:
                self.store = self._rebuild_store()
            self.save()
            return n
        finally:
            lock.close()

    def _remove_ids(self, ids: list[int]) -> int:
        if not ids:
            return 0
        self._query_steps.clear()
        with self.catalog.tx() as db:
            self.catalog.delete(db, ids)
            for hook in _REMOVE_HOOKS:
                hook(self, db, ids)
        self.store.remove(np.array(ids, np.int64))
        return len(ids)

    # -- reading ---------------------------------------------------------------------------------
    def describe_query(self, image: str | os.PathLike | bytes | np.ndarray,
                       box: tuple[int, int, int, int] | None = None,
                       rotate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(search vectors, RGB) of a query image (path, bytes or RGB array): one row, or with
        ``rotate`` three (upright, turned 90 degrees left and right)."""
        rgb = image if isinstance(image, np.ndarray) else load_image(image)
        if box is not None:
            x, y, w, h = box
            H, W = rgb.shape[:2]
            x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"box {box} lies outside the {W}x{H} image")
            rgb = rgb[y0:y1, x0:x1]
        raw = self.pipeline.describe(turned(rgb) if rotate else [rgb])
        return self.pipeline.prepare(raw), rgb

    def search(self, image: str | os.PathLike | bytes | np.ndarray | None = None, k: int = 10,
               text: str | None = None, id: int | None = None,
               box: tuple[int, int, int, int] | None = None, rerank: str | None = None,
               rotate: bool = False) -> SearchResult:
        """The k most similar indexed images to an image (path, bytes, RGB array), an indexed id,
        or a text query; ``rerank`` adds re-rank steps to the index's own (``"aqe"``, ``"sv"``,
        ``"dba+aqe"``) for this query; ``rotate`` also searches with the query image turned 90
        degrees each way, each indexed image keeping its best score (re-rank steps then run once,
        from the view that matched best; see ``Pipeline.search_views``)."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        if text is not None:
            return self._search_text(text, k, t0)
        ctx = QueryContext(index_dir=self.dir, catalog=self.catalog)
        if id is not None:
            vecs = self.catalog.vectors([id])
            if id not in vecs:
                raise KeyError(f"no indexed image with id {id}")
            q = self.pipeline.prepare(vecs[id][None])
            row = self.catalog.get(id)
            ctx.path = row.path if row else None
        elif image is not None:
            q, rgb = self.describe_query(image, box, rotate)
            ctx.image = rgb
            ctx.path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        else:
            raise ValueError("give an image, an id or a text")
        timings["describe"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        pipe, store = self._with_steps(rerank) if rerank else (self.pipeline, self.store)
        if len(q) > 1:
            scores, ids = pipe.search_views(store, q, k, ctx)
        else:
            scores, ids = pipe.search(store, q, k, [ctx])
        timings["search"] = (time.perf_counter() - t1) * 1000
        return SearchResult(self._hits(scores[0], ids[0]), (time.perf_counter() - t0) * 1000, timings)

    def _with_steps(self, rerank: str) -> tuple[Pipeline, VectorStore]:
        """The pipeline with the extra steps of ``rerank`` fitted on the indexed vectors, and the
        store they search (a copy when a step transforms the database); kept until the index changes
        (every write clears them)."""
        ids = self.store.ids()
        key = (id(self.store), len(ids), int(ids.sum()) if len(ids) else 0)
        cached = self._query_steps.get(rerank)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        steps = build(f"{self.spec}+{rerank}", **self.options).steps[len(self.pipeline.steps):]
        extra = replace(self.pipeline, steps=steps)  # only the added steps, to fit them
        pipe, store = replace(self.pipeline, steps=[*self.pipeline.steps, *steps]), self.store
        if len(ids) and any(hasattr(s, "fit") or hasattr(s, "transform_database") for s in steps):
            vecs = extra.fit_steps(ids, store.reconstruct(ids))
            if extra.transforms_database:
                store = self.pipeline.make_store(vecs.shape[1])
                store.add(ids, vecs)
        self._query_steps[rerank] = (key, pipe, store)
        return pipe, store

    def _search_text(self, text: str, k: int, t0: float) -> SearchResult:
        fn = _TEXT_SEARCH.get("search")
        if fn is None:
            raise NotImplementedError(f"text queries are not supported by pipeline {self.spec!r}")
        scores, ids = fn(self, text, k)
        return SearchResult(self._hits(scores, ids), (time.perf_counter() - t0) * 1000)

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Hit]:
        valid = [(float(s), int(i)) for s, i in zip(scores, ids) if i >= 0 and np.isfinite(s)]
        rows = self.catalog.rows([i for _, i in valid])
        return [Hit(i, rows[i].path, s, r + 1) for r, (s, i) in enumerate(v for v in valid if v[1] in rows)]

    def info(self) -> dict[str, Any]:
        counts = self.catalog.counts()
        size = sum(f.stat().st_size for f in self.dir.rglob("*") if f.is_file())
        return {
            "index": str(self.dir), "pipeline": self.spec, "options": self.options,
            "description": self.pipeline.description,
            "extractor": self.pipeline.extractor.config(), "metric": self.pipeline.metric,
            "images": counts["ok"], "errors": counts["error"], "vectors": len(self.store),
            "dim": getattr(self.store, "dim", None), "store": type(self.store).__name__,
            "bytes_on_disk": size, "versions": self.catalog.get_setting("versions", {}),
            "skipped": [{"path": p, "reason": r} for p, r in self.catalog.errors()],
        }

    def close(self) -> None:
        self.catalog.close()

    def __len__(self) -> int:
        return len(self.store)

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# Extension points filled by optional parts (text search, local features) on import.
_WRITE_HOOKS: list[Callable[[Index, Any, int, Result], None]] = []
_REMOVE_HOOKS: list[Callable[[Index, Any, list[int]], None]] = []
_TEXT_SEARCH: dict[str, Callable[[Index, str, int], tuple[np.ndarray, np.ndarray]]] = {}


def open(directory: str | os.PathLike, pipeline: str | None = None, store: str | None = None,  # noqa: A001
         **options: Any) -> Index:
    """Open (or create) the index in ``directory``; ``pipeline`` is needed only to create one,
    ``store`` picks the vector store (a ``make_store`` spec, default ``auto``)."""
    return Index(directory, pipeline, options or None, store=store)
