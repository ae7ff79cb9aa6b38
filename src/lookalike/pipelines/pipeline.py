"""A pipeline: an extractor, post-processing, re-rank steps and how their results are searched.

Built from a document (``pipelines.spec``) by ``pipelines.build``; the engine stores what
``describe`` returns, searches what ``prepare`` returns, and lets the steps re-rank.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lookalike.features.base import Extractor
from lookalike.postprocess import Step
from lookalike.rerank.base import Reranker
from lookalike.store.base import VectorStore
from lookalike.store.flat import FlatStore


@dataclass
class QueryContext:
    """What a re-rank step may read beyond the query vector: the query image and path, and a
    read-only view of the indexed images (``paths``: id -> path; ``local_features``: ids ->
    stored local features or None). Steps never write through it."""

    image: np.ndarray | None = None  # RGB of the query
    path: str | None = None
    paths: Callable[[Sequence[int]], dict[int, str]] | None = None
    local_features: Callable[[Sequence[int]], list[Any]] | None = None


@dataclass
class Pipeline:
    """Turns images into stored vectors and queries into ranked ids."""

    name: str
    extractor: Extractor
    post: list[Step] = field(default_factory=list)
    steps: list[Reranker] = field(default_factory=list)
    shortlist: int = 100
    description: str = ""
    supports_text: bool = False
    store_factory: Callable[[int], VectorStore] | None = None  # a store this pipeline needs (bag of words)
    extensions: list[Any] = field(default_factory=list)  # per-image extras kept by the writer
    document: Any = None  # the PipelineDoc it was built from

    # -- description -------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        return "+".join([self.name] + [s.name for s in self.steps])

    @property
    def metric(self) -> str:
        return self.extractor.metric

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw descriptors (what the catalog stores)."""
        return np.asarray(self.extractor.describe(list(images)), np.float32)

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Raw descriptors -> the vectors that are searched (post-processing applied). Before a
        learned step is fitted it gives zero vectors of the final size, never wrong vectors."""
        x = self.extractor.prepare_vectors(np.asarray(raw, np.float32))
        for p in self.post:
            x = p.apply(x) if p.fitted else p.unfitted_output(x)
        return np.ascontiguousarray(x, np.float32)

    @property
    def needs_fit(self) -> bool:
        """Something must be learned from the collection before it is described."""
        return not self.extractor.fitted or any(not p.fitted for p in self.post)

    def fit(self, images: Sequence[np.ndarray]) -> None:
        """Learn what is unfitted from a sample of the collection: the extractor's vocabulary
        from the images, then the post-processing (e.g. whitening) from their descriptors."""
        if not self.extractor.fitted:
            self.extractor.fit(list(images))
        if any(not p.fitted for p in self.post) and len(images):
            self.fit_post(self.describe(images))

    def fit_post(self, raw: np.ndarray) -> None:
        """Learn the unfitted post-processing steps from raw descriptors, in order."""
        x = self.extractor.prepare_vectors(np.asarray(raw, np.float32))
        for p in self.post:
            if not p.fitted:
                p.fit(x)
            x = p.apply(x)

    def config(self) -> dict[str, Any]:
        return {"spec": self.spec, "extractor": self.extractor.config(),
                "post": [p.config() for p in self.post]}

    def extraction_key(self) -> str:
        """Identifies what ``describe`` computes (for caches)."""
        return json.dumps(self.extractor.config(), sort_keys=True)

    # -- learned state -------------------------------------------------------------------------
    def save_state(self, directory: Path) -> None:
        """Keep the learned post-processing, the extractor's and the steps' state in ``directory``."""
        directory = Path(directory)
        for i, p in enumerate(self.post):
            if p.fitted:
                p.save(directory / f"post{i}")
        for s in self.steps:
            s.save(directory / f"rerank-{s.name}")
        self.extractor.save(directory / "extractor")

    def load_state(self, directory: Path, steps: bool = True) -> None:
        directory = Path(directory)
        for i, p in enumerate(self.post):
            d = directory / f"post{i}"
            if d.exists():
                p.load(d)
        if steps:
            for s in self.steps:
                s.load(directory / f"rerank-{s.name}")
        d = directory / "extractor"
        if d.exists():
            self.extractor.load(d)

    # -- the database side of the steps ----------------------------------------------------------
    def make_store(self, dim: int) -> VectorStore:
        """The exact store for this pipeline's vectors (or the store it needs)."""
        if self.store_factory is not None:
            return self.store_factory(dim)
        return FlatStore(dim, "l2" if self.metric == "l2" else "ip")

    def fit_steps(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Fit the steps' offline parts (DBA, kNN graphs) in order and return the vectors to store.

        Each step is fitted on the database as the steps before it left it, so a graph built after
        DBA sees the augmented vectors that are searched.
        """
        for s in self.steps:
            s.fit(ids, vectors)
            vectors = s.transform_database(ids, vectors)
        return vectors

    def update_steps(self, added_ids: np.ndarray, added_vectors: np.ndarray,
                     removed_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Follow an add and a remove through the steps in order; returns what the store must
        change: (ids to drop, ids to (re)write, their vectors). A database-side step (DBA) turns
        the neighbours of what came and went into rewrites for the steps after it."""
        added_ids = np.asarray(added_ids, np.int64)
        removed_ids = np.asarray(removed_ids, np.int64)
        vectors = np.asarray(added_vectors, np.float32)
        if len(added_ids):
            vectors = vectors.reshape(len(added_ids), -1)
        for s in self.steps:
            changed = s.update(added_ids, vectors, removed_ids)
            if not s.transforms_database:
                continue
            rewritten = np.setdiff1d(changed, added_ids)  # existing rows whose stored vector moved
            added_ids = np.concatenate([added_ids, rewritten])
            removed_ids = np.union1d(removed_ids, rewritten)
            vectors = s.transform_database(added_ids, None) if len(added_ids) else vectors[:0]
        return removed_ids, added_ids, vectors

    @property
    def transforms_database(self) -> bool:
        return any(s.transforms_database for s in self.steps)

    # -- search --------------------------------------------------------------------------------
    def search(self, store: VectorStore, queries: np.ndarray, k: int,
               contexts: Sequence[QueryContext] | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for each query vector, re-ranked by the steps; with ``allowed``
        (sorted ids) only those are searched, and only those are kept after the steps (a step such
        as query expansion searches again and may meet others)."""
        queries = np.asarray(queries, np.float32)
        scores, ids = self._first_stage(store, queries, k, allowed)
        return _keep(*self._rerank(store, queries, scores, ids, k if allowed is None else None, contexts),
                     allowed, k)

    def _first_stage(self, store: VectorStore, queries: np.ndarray, k: int,
                     allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest neighbours before re-ranking: k of them, or the shortlist when steps follow;
        among ``allowed`` only when given (the filter is applied inside the search)."""
        if self.metric == "chi2":
            return _brute_force(self.extractor, store, queries, max(k, self.shortlist), allowed)
        kk = min(max(k, self.shortlist if self.steps else k), max(len(store), 1))
        if allowed is not None and len(allowed) < len(store):
            return store.search_within(queries, kk, allowed)
        return store.search(queries, kk)

    def _rerank(self, store: VectorStore, queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int | None,
                contexts: Sequence[QueryContext] | None) -> tuple[np.ndarray, np.ndarray]:
        """Run the steps on each query's first-stage (scores, ids); top k of the result (all of it
        when k is None)."""
        if not self.steps:
            return _pad(scores, ids, k) if k else (scores, ids)
        out_s, out_i = [], []
        for qi in range(len(queries)):
            s, i = scores[qi:qi + 1], ids[qi:qi + 1]
            ctx = contexts[qi] if contexts else None
            for step in self.steps:
                s, i = step.rerank(queries[qi:qi + 1], s, i, store, ctx)
                s, i = _merge_tail(s[0], i[0], scores[qi], ids[qi])
                s, i = s[None], i[None]
            out_s.append(s[0])
            out_i.append(i[0])
        width = max(len(x) for x in out_i)
        S = np.full((len(queries), width), -np.inf, np.float32)
        I = np.full((len(queries), width), -1, np.int64)
        for qi, (s, i) in enumerate(zip(out_s, out_i)):
            S[qi, :len(s)], I[qi, :len(i)] = s, i
        return _pad(S, I, k) if k else (S, I)

    def search_views(self, store: VectorStore, views: np.ndarray, k: int,
                     context: QueryContext | None = None,
                     allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (1, k) for one query given as several views (e.g. turned copies, see ``turned``):
        every image keeps its best score over the views. Re-rank steps then run once on that
        merged list, from the view whose top match is strongest (scores re-ranked from different
        views are not comparable)."""
        views = np.asarray(views, np.float32)
        scores, ids = self._first_stage(store, views, k, allowed)
        merged_s, merged_i = best_per_id(scores, ids, scores.size)
        found = int((merged_i[0] >= 0).sum())
        merged_s, merged_i = merged_s[:, :found], merged_i[:, :found]
        if not self.steps:
            return _pad(merged_s[:, :k], merged_i[:, :k], k)
        best = int(np.argmax(scores[:, 0]))
        return _keep(*self._rerank(store, views[best:best + 1], merged_s, merged_i, k if allowed is None else None,
                                   [context] if context else None), allowed, k)


QUERY_TURNS = (1, 3)  # np.rot90 counts of the extra query views: 90 degrees left and right


def turned(image: np.ndarray) -> list[np.ndarray]:
    """The image upright and turned 90 degrees each way: photos are often stored on their side."""
    return [image] + [np.ascontiguousarray(np.rot90(image, t)) for t in QUERY_TURNS]


def best_per_id(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (scores, ids) merged into one ranking (1, k), each id at its highest score."""
    s, i = np.asarray(scores, np.float32).ravel(), np.asarray(ids, np.int64).ravel()
    ok = (i >= 0) & np.isfinite(s)
    s, i = s[ok], i[ok]
    order = np.argsort(-s, kind="stable")
    _, first = np.unique(i[order], return_index=True)  # each id's first place is its best score
    keep = order[np.sort(first)][:k]
    return _pad(s[keep][None], i[keep][None], k)


def _merge_tail(s: np.ndarray, i: np.ndarray, s0: np.ndarray, i0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A step's ranking, then the first-stage ids it did not return, below it, in first-stage order."""
    keep = i >= 0
    s, i = np.asarray(s, np.float32)[keep], np.asarray(i, np.int64)[keep]
    seen = set(i.tolist())
    rest = np.array([j for j in i0.tolist() if j >= 0 and j not in seen], np.int64)
    if not len(rest):
        return s, i
    floor = (float(s.min()) if len(s) else 0.0) - 1.0
    tail = floor - np.arange(1, len(rest) + 1, dtype=np.float32) * 1e-6
    return np.concatenate([s, tail.astype(np.float32)]), np.concatenate([i, rest])


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] >= k:
        return scores[:, :k], ids[:, :k]
    pad = k - ids.shape[1]
    return (np.hstack([scores, np.full((len(ids), pad), -np.inf, np.float32)]),
            np.hstack([ids, np.full((len(ids), pad), -1, np.int64)]))


def _keep(scores: np.ndarray, ids: np.ndarray, allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's hits among ``allowed`` only, in order, padded to k (no-op without a filter)."""
    if allowed is None:
        return scores, ids
    out_s = np.full((len(ids), k), -np.inf, np.float32)
    out_i = np.full((len(ids), k), -1, np.int64)
    for r in range(len(ids)):
        ok = np.isin(ids[r], allowed) & (ids[r] >= 0)
        s, i = scores[r][ok][:k], ids[r][ok][:k]
        out_s[r, :len(s)], out_i[r, :len(i)] = s, i
    return out_s, out_i


def _brute_force(extractor, store: VectorStore, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    ids = store.ids()
    if allowed is not None:
        ids = np.intersect1d(ids, allowed)
    if not len(ids):
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    db = store.reconstruct(ids)
    sims = extractor.chi2_similarity(queries, db)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, 1), ids[order]


