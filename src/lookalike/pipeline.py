"""Pipelines: an extractor, post-processing, a vector store and re-rank steps, named by a spec.

A spec is ``BASE[+STEP...]``: ``"default"``, ``"color"``, ``"default+aqe"``. Bases are registered
in ``PIPELINES`` (a factory returning a ``Pipeline``), steps in ``lookalike.rerank.RERANKERS``.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .features.base import Extractor
from .index.base import VectorStore
from .index.flat import FlatStore
from .registry import Registry


@dataclass
class QueryContext:
    """What a re-rank step may need beyond the query vector (e.g. spatial verification)."""

    image: np.ndarray | None = None  # RGB of the query
    path: str | None = None
    index_dir: Path | None = None
    catalog: Any = None  # lookalike.index.catalog.Catalog when searching an index


@dataclass
class Pipeline:
    """Turns images into stored vectors and queries into ranked ids."""

    name: str
    extractor: Extractor
    post: list[Any] = field(default_factory=list)  # steps with apply(X) [and fit/save/load]
    steps: list[Any] = field(default_factory=list)  # re-rankers
    shortlist: int = 100
    description: str = ""
    supports_text: bool = False

    # -- description -------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        return "+".join([self.name] + [s.name for s in self.steps])

    @property
    def metric(self) -> str:
        return getattr(self.extractor, "metric", "ip")

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw descriptors (what the catalog stores)."""
        return np.asarray(self.extractor.describe(list(images)), np.float32)

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Raw descriptors -> the vectors that are searched (post-processing applied)."""
        x = np.asarray(raw, np.float32)
        prep = getattr(self.extractor, "prepare_vectors", None)
        if prep is not None:
            x = prep(x)
        for p in self.post:
            x = p.apply(x)
        return np.ascontiguousarray(x, np.float32)

    @property
    def needs_fit(self) -> bool:
        return any(hasattr(p, "fit") and not getattr(p, "fitted", True) for p in self.post)

    def fit(self, raw: np.ndarray) -> None:
        """Learn post-processing (e.g. whitening) from raw descriptors of the collection."""
        x = np.asarray(raw, np.float32)
        prep = getattr(self.extractor, "prepare_vectors", None)
        if prep is not None:
            x = prep(x)
        for p in self.post:
            if hasattr(p, "fit") and not getattr(p, "fitted", True):
                p.fit(x)
            x = p.apply(x)

    def config(self) -> dict[str, Any]:
        return {"spec": self.spec, "extractor": self.extractor.config(),
                "post": [getattr(p, "config", lambda: {"name": type(p).__name__})() for p in self.post]}

    def extraction_key(self) -> str:
        """Identifies what ``describe`` computes (for caches)."""
        return json.dumps(self.extractor.config(), sort_keys=True)

    # -- state ---------------------------------------------------------------------------------
    def save_state(self, directory: Path) -> None:
        for i, p in enumerate(self.post):
            if hasattr(p, "save") and getattr(p, "fitted", True):
                p.save(Path(directory) / f"post{i}")
        for s in self.steps:
            if hasattr(s, "save"):
                s.save(Path(directory) / f"rerank-{s.name}")
        if hasattr(self.extractor, "save"):
            self.extractor.save(Path(directory) / "extractor")

    def load_state(self, directory: Path) -> None:
        for i, p in enumerate(self.post):
            d = Path(directory) / f"post{i}"
            if hasattr(p, "load") and d.exists():
                p.load(d)
        for s in self.steps:
            d = Path(directory) / f"rerank-{s.name}"
            if hasattr(s, "load") and d.exists():
                s.load(d)
        d = Path(directory) / "extractor"
        if hasattr(self.extractor, "load") and d.exists():
            self.extractor.load(d)

    # -- search --------------------------------------------------------------------------------
    def make_store(self, dim: int) -> VectorStore:
        return FlatStore(dim, "l2" if self.metric == "l2" else "ip")

    def fit_steps(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Fit the steps' offline parts (DBA, kNN graphs) in order and return the vectors to store.

        Each step is fitted on the database as the steps before it left it, so a graph built after
        DBA sees the augmented vectors that are searched.
        """
        for s in self.steps:
            if hasattr(s, "fit"):
                s.fit(ids, vectors)
            if hasattr(s, "transform_database"):
                vectors = s.transform_database(ids, vectors)
        return vectors

    @property
    def transforms_database(self) -> bool:
        return any(hasattr(s, "transform_database") for s in self.steps)

    def search(self, store: VectorStore, queries: np.ndarray, k: int,
               contexts: Sequence[QueryContext] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for each query vector, re-ranked by the steps."""
        queries = np.asarray(queries, np.float32)
        scores, ids = self._first_stage(store, queries, k)
        return self._rerank(store, queries, scores, ids, k, contexts)

    def _first_stage(self, store: VectorStore, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest neighbours before re-ranking: k of them, or the shortlist when steps follow."""
        if self.metric == "chi2":
            return _brute_force(self.extractor, store, queries, max(k, self.shortlist))
        return store.search(queries, min(max(k, self.shortlist if self.steps else k), max(len(store), 1)))

    def _rerank(self, store: VectorStore, queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int,
                contexts: Sequence[QueryContext] | None) -> tuple[np.ndarray, np.ndarray]:
        """Run the steps on each query's first-stage (scores, ids); top k of the result."""
        if not self.steps:
            return _pad(scores, ids, k)
        out_s, out_i = [], []
        for qi in range(len(queries)):
            s, i = scores[qi:qi + 1], ids[qi:qi + 1]
            ctx = contexts[qi] if contexts else None
            for step in self.steps:
                s, i = _call_step(step, queries[qi:qi + 1], s, i, store, ctx)
                s, i = _merge_tail(s[0], i[0], scores[qi], ids[qi])
                s, i = s[None], i[None]
            out_s.append(s[0])
            out_i.append(i[0])
        width = max(len(x) for x in out_i)
        S = np.full((len(queries), width), -np.inf, np.float32)
        I = np.full((len(queries), width), -1, np.int64)
        for qi, (s, i) in enumerate(zip(out_s, out_i)):
            S[qi, :len(s)], I[qi, :len(i)] = s, i
        return _pad(S, I, k)

    def search_views(self, store: VectorStore, views: np.ndarray, k: int,
                     context: QueryContext | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (1, k) for one query given as several views (e.g. turned copies, see ``turned``):
        every image keeps its best score over the views. Re-rank steps then run once on that
        merged list, from the view whose top match is strongest (scores re-ranked from different
        views are not comparable)."""
        views = np.asarray(views, np.float32)
        scores, ids = self._first_stage(store, views, k)
        merged_s, merged_i = best_per_id(scores, ids, scores.size)
        found = int((merged_i[0] >= 0).sum())
        merged_s, merged_i = merged_s[:, :found], merged_i[:, :found]
        if not self.steps:
            return _pad(merged_s[:, :k], merged_i[:, :k], k)
        best = int(np.argmax(scores[:, 0]))
        return self._rerank(store, views[best:best + 1], merged_s, merged_i, k, [context] if context else None)


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


def _call_step(step, q, s, i, store, ctx):
    params = inspect.signature(step.rerank).parameters
    if "context" in params and ctx is not None:
        return step.rerank(q, s, i, store, context=ctx)
    return step.rerank(q, s, i, store)


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


def _brute_force(extractor, store: VectorStore, queries: np.ndarray, k: int):
    ids = store.ids()
    if not len(ids):
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    db = store.reconstruct(ids)
    sims = extractor.chi2_similarity(queries, db)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, 1), ids[order]


# -- registry --------------------------------------------------------------------------------
PipelineFactory = Callable[..., Pipeline]
PIPELINES: Registry[PipelineFactory] = Registry("pipeline")


@PIPELINES.register("color")
def _color(compare: str = "pearson", **_: Any) -> Pipeline:
    """HSV colour histograms of 5 regions; Pearson (or bhattacharyya, chi2, cosine by --compare)."""
    from .features.color import ColorExtractor

    return Pipeline("color", ColorExtractor(compare=compare),
                    description=f"HSV colour histograms of 5 regions, compared by {compare}")


# The fast single-scale descriptor: the ``gem`` and ``text`` pipelines, and fine-tuned models' base.
GEM_DEEP = dict(backbone="efficientnet-lite2", aggregator="gem", max_side=352)

# Pipeline options that change how a deep extractor sees an image (CLI: --max-side, --scales, ...).
EXTRACTION_OPTIONS = ("max_side", "scales", "flip", "foreground")


def extraction_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The deep extraction settings among pipeline ``options`` (unset ones left out)."""
    out = {k: options[k] for k in EXTRACTION_OPTIONS if options.get(k) not in (None, False)}
    if "scales" in out:
        out["scales"] = tuple(float(s) for s in out["scales"])
    return out


def deep_options(model: str | None = None, **base: Any) -> tuple[dict[str, Any], list[Any]]:
    """DeepExtractor arguments and post-processing steps; a fine-tuned ``model`` (from
    ``lookalike train``) replaces the backbone weights, GeM exponent and input size, and adds its
    learned whitening. ``base`` (e.g. ``extraction_overrides``) has the last word."""
    if not model:
        return {**GEM_DEEP, **base}, []
    from .train.model import load_model

    spec = load_model(model)
    return {**GEM_DEEP, **spec.extractor_kwargs(), **base}, spec.post_steps()


def _load_plugins() -> None:
    """Import the modules that register more pipelines and steps."""
    import importlib

    for mod in _PLUGINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a plugin whose optional dependency is missing
            if not (e.name or "").startswith("lookalike"):
                continue
            raise


# Modules that register pipelines or steps on import: adding a family is one module plus one line.
_PLUGINS: list[str] = [
    "lookalike.pipelines",
    "lookalike.rerank",
]


def rerankers():
    """The re-rank step registry (empty if the rerank package has none)."""
    from . import rerank

    return getattr(rerank, "RERANKERS", Registry("re-ranker"))


def parse_spec(spec: str) -> tuple[str, list[str]]:
    parts = [p.strip() for p in spec.split("+") if p.strip()]
    if not parts:
        raise ValueError("empty pipeline spec")
    return parts[0], parts[1:]


def build(spec: str, **options: Any) -> Pipeline:
    """A pipeline from a spec string such as ``"default+aqe"``; options go to the base factory."""
    _load_plugins()
    base, step_names = parse_spec(spec)
    pipe = PIPELINES.get(base)(**options)
    steps = rerankers()
    for s in step_names:
        step = steps.get(s)()
        if not getattr(step, "name", None):
            step.name = s
        pipe.steps.append(step)
    return pipe


# Bases whose meaning changed: an index built under the old name whose extractor matches the new
# name's opens under the new name (``default`` was single-scale GeM until version 0.2).
RENAMED_BASES: dict[str, str] = {"default": "gem"}

# Re-ranked pipelines worth naming (any BASE+STEP... spec works; these are the measured ones).
COMPOSITIONS = ["default+aqe", "default+dba+aqe", "default+krnn", "default+diffusion", "default+sv"]


def _first_line(obj: Any) -> str:
    doc = (obj.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def list_pipelines() -> list[dict[str, Any]]:
    """Every base pipeline, re-rank step and named re-ranked pipeline with a one-line description."""
    _load_plugins()
    out = [{"name": n, "kind": "pipeline", "description": _first_line(PIPELINES.get(n))} for n in PIPELINES.names()]
    out += [{"name": n, "kind": "rerank step", "description": _first_line(rerankers().get(n))}
            for n in rerankers().names()]
    for spec in COMPOSITIONS:
        base, steps = parse_spec(spec)
        out.append({"name": spec, "kind": "re-ranked pipeline",
                    "description": f"{base}, then " + ", then ".join(_first_line(rerankers().get(s)).split(":")[0]
                                                                  .rstrip(".") for s in steps) + "."})
    return out
