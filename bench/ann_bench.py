"""Approximate-search benchmark on clustered synthetic descriptors.

    PYTHONPATH=src python bench/ann_bench.py --n 100000 [--dim 1280] [--store auto] [--recall 0.98] [--json]

Vectors: a Gaussian mixture around a shared mean direction (real CNN descriptors are all-positive and
share one), ~``--cluster-size`` points per cluster, each point with its own noise level (so that, as
in real collections, some neighbours are much closer than others), L2-normalised, made in
fixed 50k chunks from seeded streams so any N is reproducible without holding the whole set twice.
1,000 queries come from the same mixture (not in the database). Ground truth: exact FAISS search,
chunked, cached under ``$LOOKALIKE_CACHE/ann_bench``. Prints one JSON object (``--json``) or a table.

With ``--store auto`` (the default) the store is tuned as an index tunes it (``store.tuning``: the
fastest setting reaching ``--recall`` on a sample of its own vectors) before it is measured.
``cpu_ms_per_query`` is the process CPU time of the single-query loop per query (with
``--threads 1``, less sensitive than wall time to other jobs on the machine); ``loadavg`` is read
at the end.

``speedup_vs_scan`` compares the store's single-query p50 with the classic demo's search: rows in a
SQLite table, read back one by one, Pearson correlation per row, a top-k list kept by insertion.
That scan is timed on a few queries over a ``--scan-rows`` sample (100k) and scaled linearly to N.
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import hashlib
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np
import psutil

from lookalike.config import cache_dir
from lookalike.store.factory import auto_options, load_store, make_store
from lookalike.store.flat import FlatStore
from lookalike.store.tuning import DEFAULT_RECALL, tune

CHUNK = 50_000


class Mixture:
    """Clustered unit vectors; chunk ``i`` of the database is always the same."""

    def __init__(self, dim: int, n: int, cluster_size: int = 50, seed: int = 0,
                 shared: float = 0.68, centre: float = 0.49, noise: tuple[float, float] = (0.05, 1.2)):
        rng = np.random.default_rng([seed, 1])
        self.dim, self.seed = dim, seed
        self.n_clusters = max(1, n // cluster_size)
        g = rng.normal(size=dim)
        g /= np.linalg.norm(g)
        c = rng.normal(size=(self.n_clusters, dim))
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        self.centres = (shared * g + centre * c).astype(np.float32)
        self.noise = noise

    def sample(self, count: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2, stream])
        lab = rng.integers(0, self.n_clusters, count)
        x = rng.standard_normal((count, self.dim), dtype=np.float32)
        x *= (rng.uniform(*self.noise, count).astype(np.float32) / np.sqrt(self.dim))[:, None]
        x += self.centres[lab]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunks(self, n: int) -> Iterator[tuple[int, np.ndarray]]:
        for i, start in enumerate(range(0, n, CHUNK)):
            yield start, self.sample(min(CHUNK, n - start), stream=i)

    def queries(self, count: int) -> np.ndarray:
        return self.sample(count, stream=10**6)


def ground_truth(mix: Mixture, n: int, q: np.ndarray, k: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, ids) by chunked flat search, cached on disk."""
    path = cache_dir() / "ann_bench" / f"gt_{key}.npz"
    if path.exists():
        z = np.load(path)
        return z["scores"], z["ids"]
    heap = faiss.ResultHeap(len(q), k, keep_max=True)
    for start, x in mix.chunks(n):
        d, i = faiss.knn(q, x, k, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(d, i + start)
    heap.finalize()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=heap.D, ids=heap.I)
    return heap.D, heap.I


def gap_10_11(vectors: np.ndarray) -> float:
    """Mean similarity gap between the 10th and 11th neighbour, each row queried against the rest."""
    s = vectors @ vectors.T
    np.fill_diagonal(s, -np.inf)
    top = -np.sort(-s, axis=1)[:, :11]
    return float(np.mean(top[:, 9] - top[:, 10]))


def classic_scan_ms(mix: Mixture, rows: int, queries: np.ndarray, k: int = 10) -> float:
    """Milliseconds per query of the SQLite + per-row Pearson + insertion-sorted top-k search."""
    with tempfile.TemporaryDirectory(prefix="ann-scan-") as tmp:
        con = sqlite3.connect(Path(tmp) / "classic.db")
        con.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, features BLOB)")
        for start, x in mix.chunks(rows):
            con.executemany("INSERT INTO images VALUES (?, ?)",
                            ((start + j, v.tobytes()) for j, v in enumerate(x)))
        con.commit()
        t = time.perf_counter()
        for query in queries:
            best: list[tuple[float, int]] = []
            for rid, blob in con.execute("SELECT id, features FROM images"):
                r = float(np.corrcoef(np.frombuffer(blob, np.float32), query)[0, 1])
                bisect.insort(best, (-r, rid))
                del best[k:]
        con.close()
        return (time.perf_counter() - t) * 1000 / len(queries)


def measure(store, q: np.ndarray, gt_ids: np.ndarray, k: int, threads: int = 0) -> dict:
    """Single-query latency percentiles (FAISS on ``threads`` threads, 0: all), batch throughput
    (all threads) and recall@k against the exact answer."""
    store.search(q[:20], k)  # warm caches
    lat = []
    every = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(threads)
    cpu = time.process_time()
    for i in range(len(q)):
        t = time.perf_counter()
        store.search(q[i:i + 1], k)
        lat.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu
    faiss.omp_set_num_threads(every)
    t = time.perf_counter()
    _, got = store.search(q, k)
    batch_s = time.perf_counter() - t
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, gt_ids[:, :k])]))
    return {"p50_ms": round(float(np.percentile(lat, 50) * 1000), 3),
            "p99_ms": round(float(np.percentile(lat, 99) * 1000), 3),
            "cpu_ms_per_query": round(cpu * 1000 / len(q), 3),
            "batch_qps": round(len(q) / batch_s, 1), "recall@10": round(recall, 4)}


def rss_anon_mb() -> int | None:
    """Anonymous resident memory (Linux), i.e. RSS minus mapped file pages."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def memory_bytes(store) -> int:
    if hasattr(store, "memory_bytes"):
        return store.memory_bytes()
    if isinstance(store, FlatStore):
        return len(store) * (4 * store.dim + 8)
    return 0


def run(args: argparse.Namespace) -> dict:
    n, dim, k = args.n, args.dim, 10
    mix = Mixture(dim, n, args.cluster_size, args.seed)
    q = mix.queries(args.queries)
    key = hashlib.sha1(json.dumps([n, dim, args.cluster_size, args.seed, args.queries]).encode()
                       ).hexdigest()[:12]
    t = time.perf_counter()
    gt_scores, gt_ids = ground_truth(mix, n, q, k + 1, key)
    gt_s = time.perf_counter() - t

    t = time.perf_counter()
    size, loaded = 0, bool(args.store_dir and (args.store_dir / "manifest.json").exists())
    if loaded:  # a store this command built and saved before: measure it again
        store = load_store(args.store_dir)
    else:
        store = make_store(args.store, dim, "ip", n_expected=n, memory_budget_mb=args.budget_mb)
        if not store.is_trained:
            size = args.train or getattr(store, "max_train", 100_000)
            store.train(np.vstack([x for _, x in mix.chunks(min(n, size))]))
        for start, x in mix.chunks(n):
            store.add(np.arange(start, start + len(x)), x)
        del x  # the last chunk: not part of the store's memory
    build_s = time.perf_counter() - t
    tuning, tune_s = None, 0.0
    opts = auto_options(args.store)
    if loaded and not args.retune:
        tuning = getattr(store, "tuning", None)
    elif opts is not None:  # tuned as an index tunes its auto store
        t = time.perf_counter()
        tuning = tune(store, args.recall or opts["recall"] or DEFAULT_RECALL)
        tune_s = time.perf_counter() - t
    defaults = {key: getattr(store, key) for key in ("nprobe", "rescore", "ef_search")
                if hasattr(store, key)}

    sweep = []
    for setting in args.sweep:  # other search-time settings on the same build
        params = {key: int(v) for key, v in (kv.split("=") for kv in setting.split("&"))}
        for key, v in {**defaults, **params}.items():
            setattr(store, key, v)
        sweep.append({**params, **measure(store, q, gt_ids, k, args.threads)})
    for key, v in defaults.items():
        setattr(store, key, v)
    m = measure(store, q, gt_ids, k, args.threads)
    p50 = m["p50_ms"]
    rss_mb, anon_mb = round(psutil.Process().memory_info().rss / 2**20), rss_anon_mb()
    if args.store_dir and (not loaded or args.retune):
        store.save(args.store_dir)

    out = {
        "date": dt.date.today().isoformat(), "n": n, "dim": dim, "queries": len(q),
        "store": args.store, "store_class": type(store).__name__,
        "store_factory": getattr(store, "factory", "Flat"),
        "params": defaults, "train_rows": min(n, size), "loaded": loaded,
        ("load_s" if loaded else "build_s"): round(build_s, 1),
        "tuning": tuning, "tune_s": round(tune_s, 1), **m,
        "rss_mb": rss_mb,
        "rss_anon_mb": anon_mb,  # without file pages mapped from the on-disk vectors
        "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "float32_vectors_mb": round(n * dim * 4 / 2**20),
        "rss_over_vectors": round(rss_mb * 2**20 / (n * dim * 4), 3),
        "bytes_per_vector": round(memory_bytes(store) / n, 1),
        "gap_10_11": round(float(np.mean(gt_scores[:, 9] - gt_scores[:, 10])), 5),
        "gap_10_11_at_2000": round(gap_10_11(Mixture(dim, 2000, args.cluster_size, args.seed).sample(2000, 0)), 5),
        "ground_truth_s": round(gt_s, 1),
    }
    if sweep:
        out["sweep"] = sweep
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.real_gap:  # the same separability measure on real gem descriptors
        import gem_feats

        out["gap_10_11_real"] = round(gap_10_11(gem_feats.load(args.real_gap)["vectors"]), 5)
    if args.scan_queries:
        rows = min(n, args.scan_rows)
        scan_ms = classic_scan_ms(mix, rows, q[:args.scan_queries]) * n / rows
        out.update({"scan_ms_per_query": round(scan_ms, 1), "scan_rows_timed": rows,
                    "scan_queries_timed": args.scan_queries,
                    "scan_extrapolated_to_n": rows != n,
                    "speedup_vs_scan": round(scan_ms / p50, 1)})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--store", default="auto", help="a make_store spec")
    p.add_argument("--budget-mb", type=float, default=None, help="memory budget for 'auto'")
    p.add_argument("--recall", type=float, default=None, help="recall target 'auto' is tuned to (default 0.98)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--train", type=int, default=None,
                   help="training sample for quantisers (default: the store's max_train, else 100k)")
    p.add_argument("--cluster-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scan-rows", type=int, default=100_000)
    p.add_argument("--scan-queries", type=int, default=3, help="0 skips the classic scan")
    p.add_argument("--threads", type=int, default=0,
                   help="FAISS threads for single queries (0: all); building and batches use all")
    p.add_argument("--sweep", nargs="*", default=[],
                   help="extra search settings to measure on the same build, e.g. 'nprobe=8&rescore=5'")
    p.add_argument("--real-gap", default=None, metavar="DATASET",
                   help="also report gap_10_11 of the gem descriptors of a benchmark dataset")
    p.add_argument("--store-dir", type=Path, default=None,
                   help="save the built store here; when one is there, load and measure it instead")
    p.add_argument("--retune", action="store_true", help="tune a loaded store again (as a build does)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = run(args)
    if args.json:
        print(json.dumps(out))
    else:
        for key, val in out.items():
            print(f"{key:>22}  {val}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
