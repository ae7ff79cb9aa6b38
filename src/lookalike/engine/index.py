"""An image index in a folder: ``Index`` joins the parts, each in its own module.

    folder      engine.folder       files, writers' lock, stamp of the saved derived state
    catalog     engine.catalog      SQLite, the source of truth
    migrations  engine.migrations   schema versions, read in memory, written by the writer
    stores      engine.stores       which vector store, opening, repair, growth, saving
    writer      engine.writer       every add / update / remove, derived state in the same batch
    searcher    engine.searcher     read-only searches under the read lock

One writer changes an index (the folder's lock across processes, a mutex inside one); searches
in the same process run under a read-write lock, so each sees the index before or after a batch,
never during it. ``refresh`` follows what another process wrote.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterable, Sequence

from lookalike.version import __version__
from lookalike.engine.catalog import Catalog
from lookalike.engine.folder import IndexFolder
from lookalike.engine.locks import RWLock
from lookalike.engine.migrations import SCHEMA_VERSION, migrate, new_settings, read_document, version_of
from lookalike.engine.results import AddReport, SearchResult
from lookalike.engine.searcher import Searcher
from lookalike.engine.stores import StoreManager
from lookalike.engine.writer import Writer
from lookalike.errors import BusyError, ConflictError, NotFoundError
from lookalike.pipelines import Pipeline, PipelineDoc, build, check_spec, parse_spec, stored_form, supports_text
from lookalike.store.factory import auto_spec, store_factory


class Index:
    """An image index in a directory: catalog (SQLite) + vector store (FAISS) + pipeline state.

    ``pipeline`` (a spec string) and ``options`` are needed only to create one; given for an
    existing index they must match what it was built with. ``store`` picks the vector store
    (``store.factory.make_store``; default ``auto``); given for an existing index, the store is
    rebuilt as that kind. ``recall`` and ``memory_mb`` set the ``auto`` store's recall target
    (default 0.98; the store is tuned to it) and memory budget (the store spec ``auto?recall=...``).
    ``readonly`` opens for searching only: nothing in the folder is written.
    """

    def __init__(self, directory: str | os.PathLike, pipeline: str | None = None,
                 options: dict[str, Any] | None = None, create: bool = True, readonly: bool = False,
                 store: str | None = None, recall: float | None = None,
                 memory_mb: float | None = None) -> None:
        self.folder = IndexFolder(directory)
        self.readonly = readonly
        self.lock = RWLock()
        options = {k: v for k, v in (options or {}).items() if v is not None}
        tuned = recall is not None or memory_mb is not None
        if tuned and (not self.folder.exists() or store is not None):
            store = auto_spec(store, recall, memory_mb)
        if not self.folder.exists():
            if not create or readonly:
                raise NotFoundError(f"{self.folder.path}: no index here (create one with `lookalike index`)")
            if pipeline is not None:
                check_spec(pipeline)
            pipe = build(parse_spec(pipeline or "default", options, store=store or "auto"))
            self.folder.create()  # only once the pipeline is known to build
            self.catalog = Catalog(self.folder.catalog)
            with self.catalog.tx() as db:
                new_settings(pipe.document, db, self.catalog, {"lookalike": __version__})
        else:
            self.catalog = Catalog(self.folder.catalog, readonly=readonly)
            doc = read_document(self.catalog)
            if doc is None:  # a folder whose creation was interrupted: create it now
                if readonly:
                    raise NotFoundError(f"{self.folder.path}: the index was never written (index it first)")
                store = auto_spec(store, recall, memory_mb) if tuned else store
                pipe = build(parse_spec(pipeline or "default", options, store=store or "auto"))
                with self.catalog.tx() as db:
                    new_settings(pipe.document, db, self.catalog, {"lookalike": __version__})
            else:
                self._check_request(doc, pipeline, options)
                if tuned and store is None:
                    store = auto_spec(doc.store, recall, memory_mb)
                pipe = build(doc)
                if doc.extractor is not None and stored_form(pipe.extractor.config()) != doc.extractor:
                    raise ConflictError(
                        f"{self.folder.path}: the index was built with extractor settings {doc.extractor}, "
                        f"but this version describes images with {stored_form(pipe.extractor.config())}: "
                        "rebuild the index")
                if not readonly:
                    self._migrate()
        self.pipeline: Pipeline = pipe
        stamp = self.folder.read_stamp()
        self.generation = self.catalog.generation()
        current = stamp is not None and stamp.get("generation") == self.generation
        if self.folder.state.exists():
            self.pipeline.load_state(self.folder.state, steps=current)
        self.stores = StoreManager(self.folder, self.catalog, self.pipeline, pipe.document.store)
        # a read-only open reads the store on first use: a text search never needs it
        self._store: Any = None
        self._store_current = current
        self._store_lock = threading.Lock()
        if not readonly:
            self._store = self.stores.open(current)
        self.writer = Writer(self)
        self.searcher = Searcher(self)
        if store is not None and store != self.stores.spec and not readonly:
            self.writer.change_store(store)

    @property
    def store(self) -> Any:
        """The vector store (``store.base.VectorStore``), opened on first use when read-only."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = self.stores.open(self._store_current)
        return self._store

    @store.setter
    def store(self, store: Any) -> None:
        self._store = store

    def _check_request(self, doc: PipelineDoc, pipeline: str | None, options: dict[str, Any]) -> None:
        if pipeline is not None:
            asked = parse_spec(pipeline)
            if asked.spec != doc.spec or (asked.options and asked.options != doc.options):
                raise ConflictError(f"{self.folder.path} was built with pipeline {doc.to_spec()!r}, not "
                                    f"{pipeline!r}: use another --index folder, or omit --pipeline")
        if options and options != {k: v for k, v in doc.options.items() if v is not None}:
            raise ConflictError(f"{self.folder.path} was built with options {doc.options}, not {options}")

    def _migrate(self) -> None:
        """Bring an index written by an older lookalike to the current schema (when no other
        process is writing it; otherwise the next writer does)."""
        if (version_of(self.catalog) or SCHEMA_VERSION) >= SCHEMA_VERSION:
            return
        try:
            with self.folder.write_lock():
                migrate(self.catalog, self.folder)
        except BusyError:
            pass

    # -- what it is ------------------------------------------------------------------------------
    @property
    def dir(self) -> Any:
        return self.folder.path

    @property
    def spec(self) -> str:
        return self.pipeline.document.spec

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.pipeline.document.options)

    @property
    def supports_text(self) -> bool:
        return supports_text(self.pipeline)

    def local_features(self, ids: Sequence[int]) -> list[Any]:
        """Stored local features of ``ids`` (None where there are none), for verification."""
        reader = self.local_features_reader()
        return reader(ids) if reader is not None else [None] * len(ids)

    def local_features_reader(self) -> Callable[[Sequence[int]], list[Any]] | None:
        """Stored local features by id (for verification), or None where the index keeps none."""
        from lookalike.features.local.store import LocalFeatureStore
        from lookalike.pipelines.local import LocalFeaturesExtension

        reader = LocalFeaturesExtension.lookup(self.catalog.db)
        if reader is not None:
            return reader
        legacy = self.folder.path / IndexFolder.LEGACY_LOCAL_FEATURES
        if legacy.exists():  # an index of version 0.2 opened read-only
            return LocalFeatureStore(legacy, readonly=True).get_many
        return None

    def info(self) -> dict[str, Any]:
        counts = self.catalog.counts()
        doc = self.pipeline.document
        return {
            "index": str(self.folder.path), "pipeline": doc.to_spec(), "options": dict(doc.options),
            "document": doc.to_dict(), "schema_version": version_of(self.catalog),
            "generation": self.generation, "description": self.pipeline.description,
            "extractor": self.pipeline.extractor.config(), "metric": self.pipeline.metric,
            "images": counts["ok"], "errors": counts["error"], "vectors": len(self.store),
            "dim": self.store.dim, "store": type(self.store).__name__, "store_spec": self.stores.spec,
            "store_factory": store_factory(self.store), "store_tuning": getattr(self.store, "tuning", None),
            "bytes_on_disk": self.folder.size(), "versions": self.catalog.get_setting("versions", {}),
            "skipped": [{"path": p, "reason": r} for p, r in self.catalog.errors()],
        }

    # -- writing (the writer) --------------------------------------------------------------------
    def add(self, paths: str | os.PathLike | Iterable[str | os.PathLike], exclude: Sequence[str] = (),
            batch_size: int = 32, prune: bool = False, runner: Any = None,
            progress: Callable[[int, int], None] | None = None,
            on_error: Callable[[str, str], None] | None = None) -> AddReport:
        """Index files and folders (a ``str`` or ``Path`` is one path); see ``Writer.add``."""
        return self.writer.add(paths, exclude, batch_size, prune, runner, progress, on_error)

    def remove(self, paths: str | os.PathLike | Iterable[str | os.PathLike]) -> int:
        """Remove files, or every file under folders; returns how many."""
        return self.writer.remove(paths)

    def remove_ids(self, ids: Iterable[int]) -> int:
        return self.writer.remove_ids(ids)

    def save(self) -> None:
        self.writer.save()

    # -- reading (the searcher) ------------------------------------------------------------------
    def search(self, image: Any = None, k: int = 10, text: str | None = None, id: int | None = None,  # noqa: A002
               box: tuple[int, int, int, int] | None = None, rerank: str | None = None,
               rotate: bool = False, min_score: float | None = None, offset: int = 0,
               filters: Any = None, query: Any = None) -> SearchResult:
        """The k most similar indexed images (from place ``offset`` on) that pass ``filters``, to
        an image, an id, a text or a composed ``query``; see ``Searcher.search``."""
        return self.searcher.search(image, k, text, id, box, rerank, rotate, min_score, offset, filters, query)

    def allowed_ids(self, filters: Any) -> Any:
        """Sorted ids of the indexed images that pass ``filters`` (None for no filter)."""
        return self.searcher.allowed(filters)

    def listing(self, offset: int = 0, limit: int = 50, filters: Any = None) -> tuple[int, list[Any]]:
        """(how many pass, one page of their catalog rows), newest taken first."""
        return self.searcher.listing(offset, limit, filters)

    def facets(self) -> dict[str, Any]:
        """What the collection holds, for filter controls: folders, cameras, types, date and size ranges."""
        return self.searcher.facets()

    def duplicates(self, preset: str = "edited", threshold: float | None = None, keep: str = "resolution",
                   reference: Iterable[str | os.PathLike] = (), progress: Callable[[int, int], None] | None = None):
        """Groups of duplicates and copies among the indexed images, each with a suggested file to
        keep (``engine.duplicates.find_duplicates``); reads only."""
        from lookalike.engine.duplicates import find_duplicates

        return find_duplicates(self, preset, threshold, keep, reference, progress=progress)

    def describe_query(self, image: Any, box: tuple[int, int, int, int] | None = None, rotate: bool = False):
        return self.searcher.describe_query(image, box, rotate)

    # -- following other writers -----------------------------------------------------------------
    def refresh(self) -> bool:
        """Catch up with what another process wrote (cheap when nothing changed): a new store and
        state are opened off the lock, then swapped in at once. Returns whether anything changed."""
        if self.catalog.generation() == self.generation:
            return False
        if not self.writer.mutex.acquire(blocking=False):  # this process is writing: nothing to follow
            return False
        try:
            generation = self.catalog.generation()
            if generation == self.generation:
                return False
            pipe = build(self.pipeline.document)
            stamp = self.folder.read_stamp()
            current = stamp is not None and stamp.get("generation") == generation
            if self.folder.state.exists():
                pipe.load_state(self.folder.state, steps=current)
            stores = StoreManager(self.folder, self.catalog, pipe, self.stores.spec)
            store = stores.open(current)
            with self.lock.write():
                self.pipeline, self.stores, self.store, self.generation = pipe, stores, store, generation
                self.searcher.forget()
                self.catalog.forget_columns()  # another process may have migrated the schema
            return True
        finally:
            self.writer.mutex.release()

    # -- life ------------------------------------------------------------------------------------
    def close(self) -> None:
        self.catalog.close()
        self.writer.thumbs.close()

    def __len__(self) -> int:
        return len(self.store)

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
