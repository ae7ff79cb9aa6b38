"""Searches: read-only, on one consistent state of the index.

A search describes its query first (no lock), then ranks under the index's read lock, so the
writer of this process never changes the store or the steps halfway through it. It writes
nothing: re-rank steps added for one query (``rerank=``) are fitted in memory and kept per
catalog generation; spatial verification of an index built without ``sv`` extracts the
candidates' local features into an in-memory cache.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.engine.results import Hit, SearchResult
from lookalike.errors import BadInputError, NotFoundError, UnsupportedError
from lookalike.io import as_rgb
from lookalike.pipelines import Pipeline, QueryContext, build, parse_steps, turned
from lookalike.store.base import VectorStore

if TYPE_CHECKING:
    from lookalike.engine.index import Index

Box = tuple[int, int, int, int]
EXTRA_STEPS_KEPT = 8  # pipelines with per-query steps kept fitted (per generation)


class Searcher:
    def __init__(self, index: "Index") -> None:
        self.ix = index
        self._extra: dict[tuple[int, str], tuple[Pipeline, VectorStore]] = {}
        self._text: tuple[int, Any] | None = None
        self.verified: dict[int, Any] = {}  # local features extracted for verification, by image id

    def forget(self, ids: Any = None) -> None:
        """Drop what is kept in memory about these images (all, when None): they changed."""
        if ids is None:
            self.verified.clear()
            self._extra.clear()
            return
        for i in np.asarray(ids, np.int64).tolist():
            self.verified.pop(int(i), None)

    # -- queries ---------------------------------------------------------------------------------
    def describe_query(self, image: Any, box: Box | None = None,
                       rotate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(search vectors, RGB) of a query image: one row, or with ``rotate`` three (upright,
        turned 90 degrees left and right)."""
        rgb = as_rgb(image)
        if box is not None:
            rgb = crop(rgb, box)
        raw = self.ix.pipeline.describe(turned(rgb) if rotate else [rgb])
        return self.ix.pipeline.prepare(raw), rgb

    def search(self, image: Any = None, k: int = 10, text: str | None = None, id: int | None = None,  # noqa: A002
               box: Box | None = None, rerank: str | None = None, rotate: bool = False,
               min_score: float | None = None) -> SearchResult:
        """The k most similar indexed images to an image (path, bytes, file object, PIL image or
        array), an indexed id, or a text; ``rerank`` adds re-rank steps for this query; ``rotate``
        also tries the query turned 90 degrees each way; ``min_score`` drops weaker hits."""
        t0 = time.perf_counter()
        k = check_k(k)
        timings: dict[str, float] = {}
        if text is not None:
            return self._search_text(text, k, t0, min_score)
        ctx = QueryContext(paths=self.ix.catalog.paths, local_features=self.ix.local_features)
        if id is not None:
            vecs = self.ix.catalog.vectors([int(id)])
            if int(id) not in vecs:
                raise NotFoundError(f"no indexed image with id {id}")
            q = self.ix.pipeline.prepare(vecs[int(id)][None])
            ctx.path = self.ix.catalog.paths([int(id)]).get(int(id))
            if rotate:
                raise BadInputError("rotate applies to query images, not to indexed ids")
        elif image is not None:
            q, rgb = self.describe_query(image, box, rotate)
            ctx.image = rgb
            ctx.path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        else:
            raise BadInputError("give an image, an id or a text")
        timings["describe"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        with self.ix.lock.read():
            pipe, store = self._with_steps(rerank) if rerank else (self.ix.pipeline, self.ix.store)
            if len(q) > 1:
                scores, ids = pipe.search_views(store, q, k, ctx)
            else:
                scores, ids = pipe.search(store, q, k, [ctx])
        timings["search"] = (time.perf_counter() - t1) * 1000
        hits = self.hits(scores[0], ids[0], min_score)
        return SearchResult(hits, (time.perf_counter() - t0) * 1000, timings)

    def _with_steps(self, rerank: str) -> tuple[Pipeline, VectorStore]:
        """The index's pipeline with the steps of ``rerank`` after its own, those fitted in memory
        on the indexed vectors, and the store they search (a copy when a step transforms the
        database). Kept until the index changes. The caller holds the read lock."""
        extra_docs = parse_steps(rerank)
        if not extra_docs:
            return self.ix.pipeline, self.ix.store
        key = (self.ix.generation, "+".join(s.to_spec() for s in extra_docs))
        cached = self._extra.get(key)
        if cached is not None:
            return cached
        base = self.ix.pipeline
        extra = build(base.document.with_steps(extra_docs)).steps[len(base.steps):]
        for s in extra:
            if s.name == "sv":  # candidates' features outlive a generation (the writer forgets changed ones)
                s.features = self.verified
        store = self.ix.store
        ids = store.ids()
        if len(ids):
            vecs = store.reconstruct(ids)
            for s in extra:
                s.fit(ids, vecs)
                vecs = s.transform_database(ids, vecs)
            if any(s.transforms_database for s in extra):
                store = base.make_store(vecs.shape[1])
                store.add(ids, vecs)
        else:
            for s in extra:
                s.fit(ids, np.zeros((0, store.dim), np.float32))
        pipe = dataclasses.replace(base, steps=[*base.steps, *extra])
        for old in [k for k in self._extra if k[0] != self.ix.generation][:]:
            del self._extra[old]
        while len(self._extra) >= EXTRA_STEPS_KEPT:
            del self._extra[next(iter(self._extra))]
        self._extra[key] = (pipe, store)
        return pipe, store

    def _search_text(self, text: str, k: int, t0: float, min_score: float | None) -> SearchResult:
        if not isinstance(text, str) or not text.strip():
            raise BadInputError("the text query is empty")
        if not self.ix.supports_text:
            raise UnsupportedError(f"text queries are not supported by pipeline {self.ix.spec!r} "
                                   "(use the text or default pipeline)")
        reader = self._text_reader()
        if reader is None:
            return SearchResult([], (time.perf_counter() - t0) * 1000)
        scores, ids = reader.search(text.strip(), k, min_score=min_score)
        return SearchResult(self.hits(scores, ids, min_score), (time.perf_counter() - t0) * 1000)

    def _text_reader(self) -> Any:
        """A text reader for the catalog's current generation (it caches the index's text
        matrices; text rows are read from the catalog, so they follow any writer at once)."""
        generation = self.ix.catalog.generation()
        cached = self._text
        if cached is not None and cached[0] == generation:
            return cached[1]
        from lookalike.pipelines.text import TextExtension

        reader = TextExtension.reader(self.ix.catalog.db)
        self._text = (generation, reader)
        return reader

    def hits(self, scores: np.ndarray, ids: np.ndarray, min_score: float | None = None) -> list[Hit]:
        valid = [(float(s), int(i)) for s, i in zip(scores, ids) if i >= 0 and np.isfinite(s)]
        if min_score is not None:
            valid = [(s, i) for s, i in valid if s >= min_score]
        rows = self.ix.catalog.rows([i for _, i in valid])
        return [Hit(i, rows[i].path, s, r + 1) for r, (s, i) in enumerate(v for v in valid if v[1] in rows)]


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise BadInputError(f"k must be a whole number, not {k!r}")
    if k < 1:
        raise BadInputError(f"k must be at least 1 (got {k})")
    return int(k)


def crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    """The part of ``rgb`` inside ``box`` = (x, y, w, h) in pixels, clipped to the image."""
    try:
        x, y, w, h = (int(v) for v in box)
    except (TypeError, ValueError):
        raise BadInputError(f"box must be four whole numbers x,y,w,h (got {box!r})") from None
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
        raise BadInputError(f"box {tuple(box)} lies outside the {W}x{H} image")
    return rgb[y0:y1, x0:x1]
