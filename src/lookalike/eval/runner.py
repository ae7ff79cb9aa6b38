"""``lookalike eval``: score a pipeline on a benchmark dataset (features cached between runs)."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lookalike.config import cache_dir
from lookalike.engine.runners import LocalRunner, describer_key, process_batch
from lookalike.errors import BadInputError, UnsupportedError
from lookalike.io import load_image
from lookalike.pipelines import QUERY_TURNS, Pipeline, QueryContext, build, parse_spec, turned
from lookalike.eval.dataset import Dataset, Query
from lookalike.eval.metrics import ranked_relevance, summarise

KEYS = ("mAP", "mAP_trapezoid", "P@1", "P@10", "R@1", "R@5", "R@10", "queries", "images_per_s", "query_ms_p50")


def _cache_file(ds: Dataset, pipe: Pipeline, what: str) -> Path:
    learned = json.dumps(pipe.document.options.get("fit_on")) if not pipe.extractor.fitted or \
        pipe.document.options.get("fit_on") else ""
    key = hashlib.sha1(f"{ds.root.resolve()}|{pipe.extraction_key()}|{learned}|{what}".encode()).hexdigest()[:16]
    d = cache_dir() / "eval"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{ds.name}-{what}-{key}.npz"


def describe_paths(pipe: Pipeline, spec: str, options: dict[str, Any], paths: list[Path],
                   progress: Callable[[int, int], None] | None = None, batch: int = 32) -> tuple[np.ndarray, float]:
    """Raw descriptors of ``paths`` (unreadable images get zeros) and the images/s achieved, through
    the indexing path (``engine.runners.process_batch``)."""
    key = describer_key(parse_spec(spec, options))
    fn = lambda b: process_batch(key, None, b)  # noqa: E731
    batches = [[str(p) for p in paths[i:i + batch]] for i in range(0, len(paths), batch)]
    out = np.zeros((len(paths), pipe.extractor.dim), np.float32)
    t0, done = time.perf_counter(), 0
    for results in LocalRunner().map(fn, batches):
        for r in results:
            if r.vector is not None:
                out[done] = r.vector
            done += 1
        if progress:
            progress(done, len(paths))
    return out, len(paths) / max(time.perf_counter() - t0, 1e-9)


def cached_descriptors(ds: Dataset, pipe: Pipeline, spec: str, options: dict[str, Any], paths: list[Path],
                       what: str, progress=None) -> tuple[np.ndarray, float]:
    """Raw descriptors of ``paths``, cached per dataset, extractor and list of paths (so a split's
    subset does not replace the whole set's cache)."""
    listed = hashlib.sha1("\n".join(str(p) for p in paths).encode()).hexdigest()[:8]
    f = _cache_file(ds, pipe, f"{what}-{listed}")
    if f.exists():
        z = np.load(f)
        if len(z["x"]) == len(paths):
            return z["x"], float(z["rate"])
    x, rate = describe_paths(pipe, spec, options, paths, progress)
    np.savez(f, x=x, rate=rate)
    return x, rate


def dataset_paths(paths: list[Path]) -> Callable[[Any], dict[int, str]]:
    """``QueryContext.paths`` over a dataset's images (ids are positions), so steps that look at
    the images themselves (spatial verification) run in an evaluation."""
    return lambda ids: {int(i): str(paths[int(i)]) for i in ids if 0 <= int(i) < len(paths)}


SPLIT_PROTOCOLS = ("classes", "images")


def split_queries(ds: Dataset, split_file: Path, protocol: str = "classes") -> Dataset:
    """The test part of a split, where every test image queries all other test images:
    ``classes``: the images of the test classes (unseen classes); ``images``: the ``test_images``
    of every class (seen classes, new images)."""
    split = json.loads(Path(split_file).read_text())
    if protocol == "classes":
        test = set(split.get("test") or split.get("test_classes") or [])
        if not test:
            raise BadInputError(f"{split_file}: no 'test' class list")
        sub = ds.restrict_classes(test)
    elif protocol == "images":
        ids = set(split.get("test_images") or [])
        if not ids:
            raise BadInputError(f"{split_file}: no 'test_images' list")
        sub = ds.restrict_ids(ids)
    else:
        raise BadInputError(f"split protocol must be one of {', '.join(SPLIT_PROTOCOLS)}, not {protocol!r}")
    by_class: dict[str, list[str]] = {}
    for d in sub.db_ids:
        by_class.setdefault(sub.labels[d], []).append(d)
    sub.queries = [Query(relevant=[o for o in by_class[sub.labels[d]] if o != d], junk=[d], image=p)
                   for d, p in zip(sub.db_ids, sub.db_paths)]
    return sub


def evaluate(dataset: str | Path, spec: str = "default", options: dict[str, Any] | None = None,
             split: str | Path | None = None, holdout_last: int | None = None,
             progress: Callable[[int, int], None] | None = None, rotate: bool = False,
             protocol: str = "classes") -> dict[str, Any]:
    """Run the benchmark; returns the keys in ``KEYS``. ``rotate`` also queries with each query
    image turned 90 degrees each way (``Pipeline.search_views``). With a ``split``, ``protocol``
    says which test part is scored (``split_queries``)."""
    options = dict(options or {})
    ds = Dataset.load(dataset)
    if split:
        ds = split_queries(ds, Path(split), protocol)
    if ds.task == "text":
        from lookalike.eval.text import evaluate_text

        return evaluate_text(ds, spec, options, holdout_last, progress)
    if holdout_last:
        raise BadInputError("--holdout-last applies to pipelines that learn from the data (text)")
    if any(q.image is None for q in ds.queries):
        raise UnsupportedError(f"text queries are not supported by pipeline {spec!r}")
    doc = parse_spec(spec, options)
    if doc.base in ("sift-bow", "orb-bow", "sift-vlad") and not doc.options.get("fit_on"):
        # as an index does, the vocabulary is learned from the collection itself (here: the database)
        options = {**options, "fit_on": str(ds.root)}
        doc = parse_spec(spec, options)
    pipe = build(doc)
    base_spec, options = doc.base, dict(doc.options)  # the spec's own options and the flags, merged
    db_raw, rate = cached_descriptors(ds, pipe, base_spec, options, ds.db_paths, "db", progress)
    pos = {p.resolve(): i for i, p in enumerate(ds.db_paths)}
    outside = [q.image for q in ds.queries if q.image.resolve() not in pos]
    q_raw_out = (cached_descriptors(ds, pipe, base_spec, options, outside, "queries")[0]
                 if outside else np.zeros((0, db_raw.shape[1]), np.float32))
    out_pos = {p.resolve(): i for i, p in enumerate(outside)}
    q_raw = np.stack([db_raw[pos[q.image.resolve()]] if q.image.resolve() in pos
                      else q_raw_out[out_pos[q.image.resolve()]] for q in ds.queries])
    fit_source = options.get("fit_on")
    if any(not p.fitted for p in pipe.post):
        pipe.fit_post(_fit_descriptors(fit_source, pipe, base_spec, options) if fit_source else db_raw)
    db = pipe.prepare(db_raw)
    qv = pipe.prepare(q_raw)
    if rotate:  # (Q, 1 + turns, D): upright, then the turned copies
        turns = _turned_descriptors(ds, pipe, [q.image for q in ds.queries])
        qv = np.concatenate([qv[:, None], pipe.prepare(turns.reshape(-1, turns.shape[-1])).reshape(
            len(qv), len(QUERY_TURNS), -1)], axis=1)
    ids = np.arange(len(db), dtype=np.int64)
    if pipe.steps:
        db = pipe.fit_steps(ids, db)
    store = pipe.make_store(db.shape[1])
    store.add(ids, db)
    paths = dataset_paths(ds.db_paths)
    rels, nrel, times = [], [], []
    for qi, q in enumerate(ds.queries):
        t = time.perf_counter()
        ctx = QueryContext(path=str(q.image), paths=paths)
        if rotate:
            scores, got = pipe.search_views(store, qv[qi], len(db), ctx)
        else:
            scores, got = pipe.search(store, qv[qi:qi + 1], len(db), [ctx])
        times.append((time.perf_counter() - t) * 1000)
        full = np.full(len(db), -np.inf, np.float64)
        valid = got[0] >= 0
        full[got[0][valid]] = scores[0][valid]
        # unranked ids (if a step returned fewer) go last, in db order
        rels.append(ranked_relevance(full, ds.db_ids, set(q.relevant), set(q.junk)))
        nrel.append(len(set(q.relevant) - set(q.junk)))
    res: dict[str, Any] = summarise(rels, nrel)
    res.update(queries=len(ds.queries), images_per_s=round(rate, 2), query_ms_p50=round(float(np.median(times)), 3))
    return {k: (round(v, 4) if isinstance(v, float) and k not in ("images_per_s", "query_ms_p50") else v)
            for k, v in ((k, res[k]) for k in KEYS)}


def _turned_descriptors(ds: Dataset, pipe: Pipeline, paths: list[Path]) -> np.ndarray:
    """Raw descriptors (N, turns, D) of the images turned by ``QUERY_TURNS``; cached."""
    f = _cache_file(ds, pipe, "turned-" + hashlib.sha1(
        json.dumps([str(p) for p in paths] + list(QUERY_TURNS)).encode()).hexdigest()[:8])
    if f.exists():
        return np.load(f)["x"]
    x = np.stack([pipe.describe(turned(load_image(p))[1:]) for p in paths])
    np.savez(f, x=x)
    return x


def _fit_descriptors(dataset: str | Path, pipe: Pipeline, spec: str, options: dict[str, Any]) -> np.ndarray:
    other = Dataset.load(dataset)
    return cached_descriptors(other, pipe, spec, {k: v for k, v in options.items() if k != "fit_on"},
                              other.db_paths, "db")[0]

