"""The store manager: which vector store an index uses, opening and repairing it against the
catalog, growing it as the collection grows, and saving it with the derived state.

The store spec comes from the index's document (``auto`` unless given): ``auto`` is exact below
``store.factory.EXACT_UP_TO`` vectors and an IVF store above, rebuilt when the collection outgrows
what it was built for, and its search knobs are tuned to its recall target (``store.tuning``) when
it is built and each time the collection has doubled since; the choice is saved with the store, so
opening it again does not tune. A pipeline that needs a store of its own (bag of words) always gets it.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, ContextManager

import numpy as np

from lookalike.engine.catalog import Catalog
from lookalike.engine.folder import IndexFolder
from lookalike.pipelines import Pipeline
from lookalike.store.base import VectorStore
from lookalike.store.factory import auto_factory, auto_options, load_store, make_store, store_factory
from lookalike.store.tuning import tunable, tune

RETUNE_GROWTH = 2.0  # tune again once the collection has grown this much since the last tuning

log = logging.getLogger(__name__)


class StoreManager:
    def __init__(self, folder: IndexFolder, catalog: Catalog, pipeline: Pipeline, spec: str = "auto") -> None:
        self.folder, self.catalog, self.pipeline, self.spec = folder, catalog, pipeline, spec or "auto"

    # -- making ------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        probe = np.zeros((1, self.pipeline.extractor.dim), np.float32)
        return int(self.pipeline.prepare(probe).shape[1])

    def new(self, dim: int | None = None, n_expected: int | None = None) -> VectorStore:
        """An empty store for ``n_expected`` vectors."""
        dim = dim or self.dim
        if self.pipeline.store_factory is not None or self.spec == "flat":
            return self.pipeline.make_store(dim)
        metric = "l2" if self.pipeline.metric == "l2" else "ip"
        return make_store(self.spec, dim, metric, n_expected=n_expected)  # auto's budget is in the spec

    def rebuild(self, n_expected: int | None = None) -> VectorStore:
        """A store of every indexed vector, with the steps fitted afresh on them."""
        ids_all, raws = [], []
        for ids, raw in self.catalog.iter_vectors():
            ids_all.append(ids)
            raws.append(raw)
        if not ids_all:
            if self.pipeline.steps:
                empty = np.zeros((0, self.dim), np.float32)
                self.pipeline.fit_steps(np.zeros(0, np.int64), empty)
            return self.new()
        ids = np.concatenate(ids_all)
        vecs = self.pipeline.prepare(np.concatenate(raws))
        if self.pipeline.steps:
            vecs = self.pipeline.fit_steps(ids, vecs)
        store = self.new(vecs.shape[1], n_expected=max(len(ids), n_expected or 0))
        store.add(ids, vecs)
        return store

    # -- opening -----------------------------------------------------------------------------------
    def open(self, state_current: bool) -> VectorStore:
        """The saved store, brought in line with the catalog (the source of truth).

        ``state_current``: the saved store and the steps' state belong to the catalog's current
        generation (the stamp says so). Otherwise a pipeline with steps rebuilds (its steps'
        offline parts must match the store), and one without repairs the rows that differ.
        """
        store = None
        if self.folder.store.exists():
            try:
                store = load_store(self.folder.store)
            except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt from the catalog
                log.warning("%s: the saved store cannot be read (%s); rebuilding it from the catalog",
                            self.folder.path, e)
                store = None
        if store is None or (self.pipeline.steps and not state_current):
            return self.rebuild()
        if not state_current:
            self.repair(store)
        return store

    def repair(self, store: VectorStore) -> int:
        """Remove rows the catalog no longer has, add the ones it has and the store lacks, and
        rewrite those the catalog re-described after the stamp; returns how many changed."""
        stamp = self.folder.read_stamp() or {}
        want = set(self.catalog.ok_ids().tolist())
        have = set(store.ids().tolist())
        newer = set(self.catalog.added_since(float(stamp["newest_added"]))) if "newest_added" in stamp else set()
        drop = np.array(sorted((have - want) | (newer & have)), np.int64)
        if len(drop):
            store.remove(drop)
        todo = sorted((want - have) | (newer & want))
        if todo:
            vecs = self.catalog.vectors(todo)
            ids = np.array(list(vecs), np.int64)
            if len(ids):
                store.add(ids, self.pipeline.prepare(np.stack(list(vecs.values()))))
        return len(drop) + len(todo)

    # -- growing -----------------------------------------------------------------------------------
    def _auto(self) -> dict | None:
        """The ``auto`` options (recall target, memory budget), None when the store is not ``auto``."""
        return auto_options(self.spec) if self.pipeline.store_factory is None else None

    def outgrown(self, store: VectorStore, n: int) -> bool:
        """True when ``auto`` would build another kind of store for ``n`` vectors."""
        opts = self._auto()
        if opts is None:
            return False
        return auto_factory(n, store.dim, opts["memory_mb"]) != store_factory(store)

    def fits(self, store: VectorStore, spec: str) -> bool:
        """True when ``store`` is what ``spec`` (another ``auto`` spec) would build as well."""
        opts = auto_options(spec)
        return (opts is not None and self._auto() is not None and store_factory(store) is not None
                and auto_factory(len(store), store.dim, opts["memory_mb"]) == store_factory(store))

    # -- tuning ------------------------------------------------------------------------------------
    def tune(self, store: VectorStore, force: bool = False,
             exclusive: Callable[[], ContextManager] = contextlib.nullcontext) -> dict | None:
        """Tune an ``auto`` store's search knobs to its recall target when it has not been tuned
        for this target, or the collection has doubled since; returns the new tuning, if any."""
        opts = self._auto()
        if opts is None or not tunable(store):
            return None
        last = getattr(store, "tuning", None) or {}
        due = (force or last.get("target") != opts["recall"]
               or len(store) >= RETUNE_GROWTH * last.get("vectors", 0))
        if not due:
            return None
        out = tune(store, opts["recall"], exclusive=exclusive)
        if out:
            log.info("%s: search tuned to %s: recall@%d %.4f (target %g), %.2f ms a query, in %.0f s",
                     self.folder.path, out["params"], out["k"], out["recall"], out["target"],
                     out["p50_ms"], out["seconds"])
        return out

    # -- saving ------------------------------------------------------------------------------------
    def save(self, store: VectorStore) -> None:
        """Save the store and the pipeline's state, then stamp them with the catalog generation
        (dropped first, so that a crash midway reads as 'not saved')."""
        self.folder.drop_stamp()
        store.save(self.folder.store)
        self.folder.state.mkdir(exist_ok=True)
        self.pipeline.save_state(self.folder.state)
        self.folder.write_stamp(self.catalog.generation(), self.catalog.newest_added())
