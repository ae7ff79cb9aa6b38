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

from lookalike.engine.compose import Part, as_parts
from lookalike.engine.filters import Filters, allowed_ids
from lookalike.engine.results import Hit, SearchResult
from lookalike.errors import BadInputError, NotFoundError, UnsupportedError
from lookalike.io import as_rgb, image_info
from lookalike.pipelines import Pipeline, QueryContext, build, parse_steps, turned
from lookalike.store.base import VectorStore
from lookalike.vectors import l2n

if TYPE_CHECKING:
    from lookalike.engine.index import Index

Box = tuple[int, int, int, int]
EXTRA_STEPS_KEPT = 8  # pipelines with per-query steps kept fitted (per generation)
ALLOWED_KEPT = 16  # filters whose allowed ids are kept (per generation)


class Searcher:
    def __init__(self, index: "Index") -> None:
        self.ix = index
        self._extra: dict[tuple[int, str], tuple[Pipeline, VectorStore]] = {}
        self._text: tuple[int, Any] | None = None
        self.verified: dict[int, Any] = {}  # local features extracted for verification, by image id
        self._allowed: dict[tuple[int, str], np.ndarray | None] = {}  # ids passing filters (None: all)

    def forget(self, ids: Any = None) -> None:
        """Drop what is kept in memory about these images (all, when None): they changed."""
        if ids is None:
            self.verified.clear()
            self._extra.clear()
            self._allowed.clear()
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
            rgb = crop(rgb, box_in_decoded(box, image, rgb))
        raw = self.ix.pipeline.describe(turned(rgb) if rotate else [rgb])
        return self.ix.pipeline.prepare(raw), rgb

    def search(self, image: Any = None, k: int = 10, text: str | None = None, id: int | None = None,  # noqa: A002
               box: Box | None = None, rerank: str | None = None, rotate: bool = False,
               min_score: float | None = None, offset: int = 0, filters: Any = None,
               query: "str | list[Part] | None" = None) -> SearchResult:
        """The k most similar indexed images to an image (path, bytes, file object, PIL image or
        array), an indexed id, a text, or a composed ``query`` (``engine.compose``: images, ids
        and texts with weights, negatives subtracted); ``rerank`` adds re-rank steps for this
        query; ``rotate`` also tries the query turned 90 degrees each way; ``min_score`` drops
        weaker hits; ``offset`` skips the first hits (pages); ``filters`` (``Filters`` or a
        mapping of its fields) restricts the search to the images that pass, inside the search.

        A composed query sums its image parts' L2-normalised descriptors, each times its weight
        (negative for "unlike"), and searches with that vector: an image's score is then the
        weighted sum of its cosine similarities to the parts. Text parts add their weight times
        the image's text score (0-1); the total is divided by the sum of the positive weights, so
        a one-part query scores as a plain one."""
        t0 = time.perf_counter()
        k = check_k(k)
        offset = check_offset(offset)
        n = k + offset
        timings: dict[str, float] = {}
        given = sum(x is not None for x in (image, text, id, query))
        if given != 1:
            raise BadInputError("give one query: an image, an id, a text or a composed query")
        allowed = self.allowed(filters)
        if allowed is not None:
            timings["filter"] = (time.perf_counter() - t0) * 1000
            if not len(allowed):
                return SearchResult([], (time.perf_counter() - t0) * 1000, timings)
        if text is not None:
            scores, ids = self._search_text(text, n, min_score, allowed)
            return SearchResult(self.hits(scores, ids, min_score, offset), (time.perf_counter() - t0) * 1000)
        if query is not None:
            if box is not None or rotate:
                raise BadInputError("box and rotate apply to a single query image, not to a composed query")
            scores, ids = self._search_composed(as_parts(query), n, rerank, min_score, allowed, timings)
            return SearchResult(self.hits(scores, ids, min_score, offset), (time.perf_counter() - t0) * 1000,
                                timings)
        ctx = QueryContext(paths=self.ix.catalog.paths, local_features=self.ix.local_features)
        if id is not None:
            q = self._id_vector(id)
            ctx.path = self.ix.catalog.paths([int(id)]).get(int(id))
            if rotate:
                raise BadInputError("rotate applies to query images, not to indexed ids")
        else:
            q, rgb = self.describe_query(image, box, rotate)
            ctx.image = rgb
            ctx.path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        timings["describe"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        with self.ix.lock.read():
            pipe, store = self._with_steps(rerank) if rerank else (self.ix.pipeline, self.ix.store)
            if len(q) > 1:
                scores, ids = pipe.search_views(store, q, n, ctx, allowed)
            else:
                scores, ids = pipe.search(store, q, n, [ctx], allowed)
        timings["search"] = (time.perf_counter() - t1) * 1000
        hits = self.hits(scores[0], ids[0], min_score, offset)
        return SearchResult(hits, (time.perf_counter() - t0) * 1000, timings)

    def allowed(self, filters: Any) -> np.ndarray | None:
        """Sorted ids that pass ``filters`` (None: no filter, or every image passes); kept for the catalog's generation,
        so the pages of one filtered search (and a gallery's scrolling) ask SQL once."""
        f = Filters.of(filters)
        if f is None:
            return None
        key = (self.ix.catalog.generation(), repr(f))
        if key in self._allowed:
            return self._allowed[key]
        ids = self._allowed_ids(f)
        if ids is not None:
            ids.setflags(write=False)
        try:
            while len(self._allowed) >= ALLOWED_KEPT:
                self._allowed.pop(next(iter(self._allowed)), None)
        except (RuntimeError, StopIteration):  # another search changed it meanwhile
            pass
        self._allowed[key] = ids
        return ids

    def _allowed_ids(self, f: Filters) -> np.ndarray | None:
        keyword = None
        if self.ix.supports_text:
            def keyword(word: str) -> np.ndarray:
                reader = self._text_reader()
                if reader is None:
                    return np.zeros(0, np.int64)
                ids = reader.image_ids()
                return np.sort(ids[reader.keyword_scores(word, ids) > 0])
        return allowed_ids(self.ix.catalog.db, f, self.ix.catalog.has_metadata, keyword)

    def listing(self, offset: int = 0, limit: int = 50, filters: Any = None) -> tuple[int, list[Any]]:
        """(how many indexed images pass ``filters``, the catalog rows of one page of them),
        newest taken first (then by id)."""
        offset = check_offset(offset)
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise BadInputError(f"limit must be a whole number of at least 1, not {limit!r}")
        cat = self.ix.catalog
        order = "taken DESC, id DESC" if cat.has_metadata else "id"
        f = Filters.of(filters)
        if f is None:
            total = cat.counts()["ok"]
            ids = [r[0] for r in cat.db.execute(f"SELECT id FROM images WHERE status='ok' ORDER BY {order} "
                                                "LIMIT ? OFFSET ?", (int(limit), offset))]
        else:
            allowed = self.allowed(f)
            ordered = self._newest_first()
            if allowed is not None:
                ordered = ordered[np.isin(ordered, allowed)]
            total = len(ordered)
            ids = ordered[offset:offset + int(limit)].tolist()
        rows = cat.rows(ids)
        return total, [rows[i] for i in ids if i in rows]

    def _newest_first(self) -> np.ndarray:
        """Every indexed id, newest taken first (from the metadata index), kept per generation."""
        key = (self.ix.catalog.generation(), "newest-first")
        kept = self._allowed.get(key)
        if kept is None:
            kept = np.fromiter((r[0] for r in self.ix.catalog.db.execute(
                "SELECT id FROM images WHERE status='ok' ORDER BY taken DESC, id DESC")), np.int64)
            self._allowed[key] = kept
        return kept

    def facets(self) -> dict[str, Any]:
        """Folders, cameras and types present, and the ranges of dates and sizes (indexed images)."""
        cat = self.ix.catalog
        if not cat.has_metadata:
            return {"folders": [], "cameras": [], "types": [], "date_min": None, "date_max": None,
                    "width_max": None, "height_max": None}
        db = cat.db
        col = lambda c: [r[0] for r in db.execute(  # noqa: E731
            f"SELECT DISTINCT {c} FROM images WHERE status='ok' AND {c} IS NOT NULL ORDER BY {c}")]
        lo, hi, w, h = db.execute("SELECT MIN(taken), MAX(taken), MAX(width), MAX(height) FROM images "
                                  "WHERE status='ok'").fetchone()
        return {"folders": col("folder"), "cameras": col("camera"), "types": col("type"),
                "date_min": lo, "date_max": hi, "width_max": w, "height_max": h}

    def _id_vector(self, image_id: int) -> np.ndarray:
        vecs = self.ix.catalog.vectors([int(image_id)])
        if int(image_id) not in vecs:
            raise NotFoundError(f"no indexed image with id {image_id}")
        return self.ix.pipeline.prepare(vecs[int(image_id)][None])

    def _search_composed(self, parts: list[Part], n: int, rerank: str | None, min_score: float | None,
                         allowed: np.ndarray | None, timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        positive = sum(p.weight for p in parts if p.weight > 0)
        if positive <= 0:
            raise BadInputError("a composed query needs at least one positive part (more like this)")
        texts = [p for p in parts if p.is_text]
        images = [p for p in parts if not p.is_text]
        if texts and not self.ix.supports_text:
            raise UnsupportedError(f"text parts are not supported by pipeline {self.ix.spec!r} "
                                   "(use the text or default pipeline)")
        if texts and rerank:
            raise BadInputError("re-rank steps apply to queries made of images only")
        q, ctx = None, QueryContext(paths=self.ix.catalog.paths, local_features=self.ix.local_features)
        if images:
            vecs = []
            for p in images:
                if p.id is not None:
                    vecs.append(self._id_vector(p.id)[0])
                else:
                    v, rgb = self.describe_query(p.image)
                    vecs.append(v[0])
                    if len(images) == 1:
                        ctx.image = rgb
            q = sum(p.weight * l2n(v[None].astype(np.float32))[0] for p, v in zip(images, vecs))
        timings["describe"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        metric_ip = self.ix.pipeline.metric in ("ip", "cosine")
        with self.ix.lock.read():
            pipe, store = self._with_steps(rerank) if rerank else (self.ix.pipeline, self.ix.store)
            if not texts:
                norm = float(np.linalg.norm(q))
                if norm < 1e-12:
                    raise BadInputError("the query's parts cancel out (an image minus itself)")
                scores, ids = pipe.search(store, (q / norm)[None].astype(np.float32), n, [ctx], allowed)
                scale = norm / positive if metric_ip else 1.0
                timings["search"] = (time.perf_counter() - t1) * 1000
                return scores[0] * scale, ids[0]
            reader = self._text_reader()
            if reader is None:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            pool = max(4 * n, 200)
            with_text = reader.image_ids()
            if allowed is not None:
                with_text = np.intersect1d(with_text, allowed)
            cands = [np.zeros(0, np.int64)]
            if q is not None:
                _, ids = pipe.search(store, l2n(q[None].astype(np.float32)), pool, None, allowed)
                cands.append(ids[0][ids[0] >= 0])
            for p in texts:
                if p.weight > 0:
                    _, ids = reader.search(p.text.strip(), pool, ids=with_text)
                    cands.append(np.asarray(ids, np.int64))
            cand = np.unique(np.concatenate(cands))
            total = np.zeros(len(cand), np.float64)
            if q is not None and len(cand):
                present = np.isin(cand, store.ids())
                cand, total = cand[present], total[present]
                total += store.reconstruct(cand) @ q
            if len(cand):
                _, text_scores = reader.score([p.text.strip() for p in texts], ids=cand, readable_scores=True)
                total += np.asarray([p.weight for p in texts]) @ text_scores
        total /= positive
        order = np.argsort(-total, kind="stable")[:n]
        timings["search"] = (time.perf_counter() - t1) * 1000
        return total[order].astype(np.float32), cand[order]

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

    def _search_text(self, text: str, k: int, min_score: float | None,
                     allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(text, str) or not text.strip():
            raise BadInputError("the text query is empty")
        if not self.ix.supports_text:
            raise UnsupportedError(f"text queries are not supported by pipeline {self.ix.spec!r} "
                                   "(use the text or default pipeline)")
        reader = self._text_reader()
        if reader is None:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if allowed is not None:
            return reader.search(text.strip(), k, min_score=min_score,
                                 ids=np.intersect1d(reader.image_ids(), allowed))
        return reader.search(text.strip(), k, min_score=min_score)

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

    def hits(self, scores: np.ndarray, ids: np.ndarray, min_score: float | None = None,
             offset: int = 0) -> list[Hit]:
        """Hits from ranked (scores, ids), from place ``offset`` on (ranks count from the top)."""
        valid = [(float(s), int(i)) for s, i in zip(scores, ids) if i >= 0 and np.isfinite(s)]
        if min_score is not None:
            valid = [(s, i) for s, i in valid if s >= min_score]
        rows = self.ix.catalog.rows([i for _, i in valid])
        ranked = [v for v in valid if v[1] in rows]
        return [Hit.of(rows[i], s, r + 1) for r, (s, i) in enumerate(ranked) if r >= offset]


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise BadInputError(f"k must be a whole number, not {k!r}")
    if k < 1:
        raise BadInputError(f"k must be at least 1 (got {k})")
    return int(k)


def box_in_decoded(box: Box, source: Any, rgb: np.ndarray) -> Box:
    """``box`` (pixels of the file as displayed) in the pixels of ``rgb``: a file too large to
    decode whole (a JPEG over ``io.MAX_PIXELS``) is decoded at 1/2, 1/4 or 1/8 size, and its box
    must shrink with it, or it would cut another part of the image."""
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                info = image_info(f)  # the header only
        except OSError:
            return box
    elif isinstance(source, (bytes, bytearray, memoryview)):
        info = image_info(bytes(source))
    else:
        return box
    H, W = rgb.shape[:2]
    if not info.width or not info.height or (info.width, info.height) == (W, H):
        return box
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return box  # crop says what is wrong with it
    sx, sy = W / info.width, H / info.height
    return (int(round(x * sx)), int(round(y * sy)), max(1, int(round(w * sx))), max(1, int(round(h * sy))))


def check_offset(offset: Any) -> int:
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise BadInputError(f"offset must be a whole number, not {offset!r}")
    if offset < 0:
        raise BadInputError(f"offset must be 0 or more (got {offset})")
    return int(offset)


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
