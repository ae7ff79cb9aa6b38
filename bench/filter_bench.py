"""Filtered search latency: similarity search restricted by catalog filters keeping 1 %, 10 % and
100 % of the collection, on synthetic descriptors.

    PYTHONPATH=src python bench/filter_bench.py --n 100000 [--dim 1280] [--stores flat,hnsw,ivfflat] [--json]

Vectors: ``ann_bench.Mixture`` (clustered, L2-normalised). Catalog: a real ``engine.catalog`` in a
temporary folder, one row per vector with metadata: folder ``/photos/NN`` (100 folders, so one
folder is 1 %), type ``png`` on every 10th image (10 %), dates taken over 2015-2024 (the 100 %
filter is a date range that holds them all). Each query runs the searcher's steps: the allowed ids
from SQL (``engine.filters.allowed_ids``; "cold": computed for the query; the searcher keeps them
per catalog generation, so later pages and queries with the same filter are "warm"), then
``Pipeline.search`` with those ids (FAISS ID selectors, or exact scores for small subsets; a filter
that every image passes is only counted, and the search runs unfiltered). Recall@10 is against the
exact answer within the subset; ``full_k`` says every query got k results.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ann_bench import Mixture  # noqa: E402

from lookalike.engine.catalog import Catalog  # noqa: E402
from lookalike.engine.filters import Filters, allowed_ids  # noqa: E402
from lookalike.engine.metadata import add_columns  # noqa: E402
from lookalike.features.base import Extractor  # noqa: E402
from lookalike.pipelines.pipeline import Pipeline  # noqa: E402
from lookalike.store.factory import make_store  # noqa: E402

FILTERS = {"1%": Filters(folder="/photos/07"), "10%": Filters(types="png"),
           "100%": Filters(date_from="2015-01-01", date_to="2024-12-31")}


def make_catalog(path: Path, n: int) -> Catalog:
    cat = Catalog(path)
    base = dt.datetime(2015, 1, 1).timestamp()
    span = dt.datetime(2024, 12, 31).timestamp() - base
    rng = np.random.default_rng(0)
    taken = [dt.datetime.fromtimestamp(base + float(s)).isoformat(timespec="seconds")
             for s in rng.uniform(0, span, n)]
    with cat.tx() as db:
        add_columns(db)
        db.executemany(
            "INSERT INTO images(id, path, size, mtime, hash, status, width, height, added, taken, type, folder)"
            " VALUES (?, ?, 1, 0, '', 'ok', 640, 480, 0, ?, ?, ?)",
            ((i, f"/photos/{i % 100:02d}/{i}.{'png' if i % 10 == 3 else 'jpg'}", taken[i],
              "png" if i % 10 == 3 else "jpg", f"/photos/{i % 100:02d}") for i in range(n)))
    return cat


def exact_within(x: np.ndarray, q: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    s = q @ x[allowed].T
    return allowed[np.argsort(-s, axis=1)[:, :k]]


def run(args: argparse.Namespace) -> dict:
    n, dim, k = args.n, args.dim, 10
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass
    mix = Mixture(dim, n, args.cluster_size, args.seed)
    x = np.vstack([c for _, c in mix.chunks(n)])
    q = mix.queries(args.queries)
    tmp = tempfile.TemporaryDirectory(prefix="filter-bench-")
    cat = make_catalog(Path(tmp.name) / "catalog.sqlite", n)
    pipe = Pipeline("bench", Extractor())
    out: dict = {"date": dt.date.today().isoformat(), "n": n, "dim": dim, "queries": len(q), "k": k,
                 "faiss_threads": faiss.omp_get_max_threads(), "stores": {}}
    allowed = {}
    for name, f in FILTERS.items():
        t = time.perf_counter()
        allowed[name] = allowed_ids(cat.db, f, True, None)
        out.setdefault("sql_ms", {})[name] = round((time.perf_counter() - t) * 1000, 2)
        out.setdefault("kept", {})[name] = n if allowed[name] is None else len(allowed[name])
    for spec in args.stores.split(","):
        store = make_store(spec, dim, "ip", n_expected=n)
        t = time.perf_counter()
        if not store.is_trained:
            store.train(x[:100_000])
        store.add(np.arange(n), x)
        res: dict = {"class": type(store).__name__, "build_s": round(time.perf_counter() - t, 1)}
        lat = []
        for i in range(len(q)):
            t0 = time.perf_counter()
            store.search(q[i:i + 1], k)
            lat.append(time.perf_counter() - t0)
        res["unfiltered_p50_ms"] = round(float(np.percentile(lat, 50)) * 1000, 3)
        for name, f in FILTERS.items():
            ids = allowed[name]
            want = exact_within(x, q, np.arange(n) if ids is None else ids, k)
            lat, cold, got = [], [], []
            pipe.search(store, q[:5], k, allowed=ids)  # warm caches
            for i in range(len(q)):
                t0 = time.perf_counter()
                if i < args.cold:
                    ids = allowed_ids(cat.db, f, True, None)
                t1 = time.perf_counter()
                _, found = pipe.search(store, q[i:i + 1], k, allowed=ids)
                t2 = time.perf_counter()
                (cold if i < args.cold else lat).append((t2 - t0) if i < args.cold else (t2 - t1))
                got.append(found[0])
            got = np.array(got)
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, want)]))
            res[name] = {"p50_ms": round(float(np.percentile(lat, 50)) * 1000, 3),
                         "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 3),
                         "cold_p50_ms": round(float(np.percentile(cold, 50)) * 1000, 3) if cold else None,
                         "recall@10": round(recall, 4), "full_k": bool((got >= 0).all()),
                         "only_allowed": bool(ids is None or np.isin(got, ids).all())}
        out["stores"][spec] = res
    cat.close()
    tmp.cleanup()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--stores", default="flat,hnsw,ivfflat", help="make_store specs, comma-separated")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--cold", type=int, default=20, help="queries that also compute the allowed ids (SQL)")
    p.add_argument("--cluster-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="FAISS and BLAS threads for single queries (0: all)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"n={out['n']} dim={out['dim']} queries={out['queries']} kept={out['kept']} sql_ms={out['sql_ms']}")
    for spec, r in out["stores"].items():
        print(f"{spec:10s} unfiltered p50 {r['unfiltered_p50_ms']} ms")
        for name in FILTERS:
            m = r[name]
            print(f"  {name:>5s} p50 {m['p50_ms']} ms  p95 {m['p95_ms']} ms  cold p50 {m['cold_p50_ms']} ms  "
                  f"recall@10 {m['recall@10']}  full_k {m['full_k']}  only_allowed {m['only_allowed']}")


if __name__ == "__main__":
    main()
