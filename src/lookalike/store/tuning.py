"""Search-time tuning (after autofaiss): the fastest setting of a store that reaches a recall target.

A fixed sample of the collection's own vectors are the queries; their true neighbours come from an
exact scan of the store (``exact_search``), each query's own row left out of both lists. The main knob
(IVF ``nprobe``, HNSW ``ef_search``) is raised from its cheapest value, doubling then bisecting, to
the least value that reaches recall@k, for each re-scoring depth the store offers; the settings that
reach it are timed on single queries on one thread (as ``bench/ann_bench.py`` measures) and the
fastest is kept. A setting reaches the target when its mean recall less one standard error does
(``lower_bound``). When none reaches the target, the one of highest recall is kept. The choice, its
measured recall and time are recorded on the store (``store.tuning``) and saved with it.
The list count of an IVF is a build-time choice (``factory.n_lists``) and is not tuned here.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import Callable, ContextManager

import numpy as np

from lookalike.store.base import VectorStore
from lookalike.store.hnsw import HNSWStore
from lookalike.store.ivfpq import IVFPQStore
from lookalike.store.lazy import faiss

DEFAULT_RECALL = 0.98
SAMPLE = 1500          # queries drawn from the collection (recall is measured on all of them); a few
                       # per cent of queries miss all their neighbours at once, so the estimate swings
                       # (see ``lower_bound``) and 500 were too few
TIMED = 100            # of those, timed one by one for each candidate setting
SAMPLE_MIN = 20        # fewer vectors than this: nothing worth tuning
RESCORE_DEPTHS = (1, 2, 4, 8, 16)  # IVF-PQ: exact re-scoring of k * depth shortlisted rows
EF_SEARCH = tuple(2 ** i for i in range(4, 12))


def knobs(store: VectorStore) -> tuple[str, list[int], str | None, list[int | None]] | None:
    """(main knob, its values cheapest first, second knob, its values) for a tunable store, else None
    (exact stores, untrained IVF stores: they scan every vector)."""
    if isinstance(store, IVFPQStore) and store.is_trained and store._is_ivf():
        nlist = faiss.extract_index_ivf(store._index).nlist
        nprobe = sorted({min(2 ** i, nlist) for i in range(int(np.log2(nlist)) + 2)})
        if store.vectors_in_lists:  # exact scores inside the lists: nothing to re-score
            return "nprobe", nprobe, None, [None]
        return "nprobe", nprobe, "rescore", list(RESCORE_DEPTHS)
    if isinstance(store, HNSWStore) and len(store):
        return "ef_search", list(EF_SEARCH), None, [None]
    return None


def tunable(store: VectorStore) -> bool:
    return knobs(store) is not None and len(store) > SAMPLE_MIN


def _recall(got: np.ndarray, truth: np.ndarray, qids: np.ndarray, k: int) -> float:
    """Mean recall@k of ``got`` against ``truth``, each query's own id removed from both."""
    return float(np.mean(_recalls(got, truth, qids, k))) if len(qids) else 0.0


def _recalls(got: np.ndarray, truth: np.ndarray, qids: np.ndarray, k: int) -> np.ndarray:
    """Recall@k of each query, its own id removed from both lists."""
    out = np.zeros(len(qids))
    for n, (g, t, own) in enumerate(zip(got, truth, qids)):
        want = [i for i in t if i != own and i >= 0][:k]
        have = {i for i in g if i != own and i >= 0}
        out[n] = len(have.intersection(want)) / max(1, len(want))
    return out


def lower_bound(recalls: np.ndarray) -> float:
    """Mean recall less one standard error: what a setting is held to. Recall per query is nearly
    all or nothing (a query whose list holds none of its neighbours misses them all), so the mean
    of a sample swings; on 1M vectors three samples of 1,500 gave 0.973-0.982 at one setting."""
    if len(recalls) < 2:
        return float(np.mean(recalls)) if len(recalls) else 0.0
    return float(np.mean(recalls) - np.std(recalls, ddof=1) / np.sqrt(len(recalls)))


def single_query_ms(store: VectorStore, q: np.ndarray, k: int) -> float:
    """Median milliseconds of one query, FAISS on one thread."""
    every = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        store.search(q[:5], k)  # warm
        lat = []
        for i in range(len(q)):
            t = time.perf_counter()
            store.search(q[i:i + 1], k)
            lat.append(time.perf_counter() - t)
    finally:
        faiss.omp_set_num_threads(every)
    return float(np.median(lat) * 1000)


def tune(store: VectorStore, target: float = DEFAULT_RECALL, k: int = 10, sample: int = SAMPLE,
         timed: int = TIMED, seed: int = 0,
         exclusive: Callable[[], ContextManager] = contextlib.nullcontext) -> dict | None:
    """Set ``store``'s search knobs to the fastest setting reaching recall@k >= ``target`` on its
    own vectors, record it as ``store.tuning`` and return it (None when there is nothing to tune).

    The exact neighbours are computed first (reads only); the candidates are tried inside
    ``exclusive()`` (the caller's write lock), since they change the store's knobs."""
    spec = knobs(store)
    if spec is None or len(store) < SAMPLE_MIN:
        return None
    t0 = time.perf_counter()
    main, values, second, depths = spec
    ids = np.sort(store.ids())
    qids = np.sort(np.random.default_rng(seed).choice(ids, min(sample, len(ids)), replace=False))
    q = store.reconstruct(qids)
    _, truth = store.exact_search(q, k + 1)

    means: dict[tuple[int, int | None], float] = {}

    def measure(v: int, depth: int | None) -> float:
        """The setting's recall lower bound (its mean is kept in ``means``)."""
        setattr(store, main, v)
        if second is not None:
            setattr(store, second, depth)
        r = _recalls(store.search(q, k + 1)[1], truth, qids, k)
        means[(v, depth)] = float(np.mean(r))
        return lower_bound(r)

    with exclusive():
        before = {name: getattr(store, name) for name in (main, second) if name is not None}
        tried: list[dict] = []
        try:
            for depth in depths:
                tried.append(_least_reaching(measure, values, depth, target))
            for c in tried:  # time the settings that reach the target (or all when none does)
                c["reached"] = c["recall"] >= target
            pool = [c for c in tried if c["reached"]] or \
                sorted(tried, key=lambda c: -c["recall"])[:1]
            for c in pool:
                measure(c["value"], c["depth"])
                c["p50_ms"] = single_query_ms(store, q[:timed], k)
            best = min(pool, key=lambda c: c["p50_ms"])
        except BaseException:
            for name, v in before.items():
                setattr(store, name, v)
            raise
        params = {main: best["value"], **({second: best["depth"]} if second is not None else {})}
        for name, v in params.items():
            setattr(store, name, v)
    store.tuning = {
        "target": target, "recall": round(means[(best["value"], best["depth"])], 4),
        "recall_lower": round(best["recall"], 4), "reached": best["reached"],
        "params": params, "p50_ms": round(best["p50_ms"], 3), "k": k, "vectors": len(store),
        "queries": len(qids), "timed_queries": min(timed, len(qids)),
        "seconds": round(time.perf_counter() - t0, 1),
        "tuned_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return store.tuning


def _least_reaching(measure: Callable[[int, int | None], float], values: list[int], depth: int | None,
                    target: float) -> dict:
    """The least value of the main knob whose recall reaches ``target`` (doubling through ``values``,
    then bisecting the last gap), or the largest value when none does."""
    lo, recall_at = None, {}
    for v in values:
        recall_at[v] = measure(v, depth)
        if recall_at[v] >= target:
            hi = v
            while lo is not None and hi - lo > 1:  # recall grows with the knob: bisect (lo, hi]
                mid = (lo + hi) // 2
                recall_at[mid] = measure(mid, depth)
                lo, hi = (lo, mid) if recall_at[mid] >= target else (mid, hi)
            return {"value": hi, "depth": depth, "recall": recall_at[hi]}
        lo = v
    top = values[-1]
    return {"value": top, "depth": depth, "recall": recall_at[top]}
