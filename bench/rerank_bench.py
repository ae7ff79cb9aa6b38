"""Re-ranking benchmark: mAP on holidays300 and caltech101_97, and added query latency at 10k.

Features are the shared GeM EfficientNet-Lite2 (max side 352) descriptors of the ``gem``
pipeline, extracted once by ``bench/gem_feats.py`` (the queries of both sets are
database images). Scoring uses the ``gem`` pipeline's search with the steps, and
``lookalike.eval.metrics`` (pessimistic ties).

    PYTHONPATH=src python bench/rerank_bench.py                     # the default table
    PYTHONPATH=src python bench/rerank_bench.py -r "aqe:alpha=0,min_sim=-1,n=4" -r dba+aqe

A chain is ``STEP[:param=value,...]+...``; without parameters a step runs with its defaults,
exactly as the spec string ``gem+STEP+...`` builds it.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import faiss
import numpy as np

from lookalike.eval.dataset import Dataset
from lookalike.eval.metrics import ranked_relevance, summarise
from lookalike.pipelines import Pipeline, build
from lookalike.rerank import Reranker, load

RERANKERS = load()

import gem_feats

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
DEFAULT_CHAINS = ["aqe", "dba", "dba+aqe", "krnn", "diffusion"]


def parse_chain(spec: str) -> list[Reranker]:
    """``"dba:n=5+aqe:alpha=3"`` -> re-ranker objects (``none`` -> no step)."""
    steps: list[Reranker] = []
    for part in filter(None, spec.split("+")):
        if part == "none":
            continue
        name, _, args = part.partition(":")
        params: dict[str, float | int] = {}
        for kv in filter(None, args.split(",")):
            k, v = kv.split("=")
            params[k] = float(v) if any(c in v for c in ".e") else int(v)
        steps.append(RERANKERS.get(name)(**params))
    return steps


def pipeline_for(chain: str) -> Pipeline:
    pipe = build("gem")
    pipe.steps = parse_chain(chain)
    return pipe


def load_set(name: str) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The dataset, its database vectors in ``db_ids`` order, and the query rows."""
    ds = Dataset.load(DATA / name)
    z = gem_feats.load(ds)
    row = {str(i): r for r, i in enumerate(z["ids"])}
    vectors = z["vectors"].astype(np.float32)[[row[d] for d in ds.db_ids]]
    at = {p.resolve(): i for i, p in enumerate(ds.db_paths)}
    qrows = np.array([at[q.image.resolve()] for q in ds.queries], np.int64)
    return ds, vectors, qrows


def index(pipe: Pipeline, vectors: np.ndarray):
    ids = np.arange(len(vectors), dtype=np.int64)
    db = pipe.prepare(vectors)
    db = pipe.fit_steps(ids, db)
    store = pipe.make_store(db.shape[1])
    store.add(ids, db)
    return store


def evaluate(name: str, chain: str, loaded: dict) -> float:
    """mAP of ``gem+chain`` on a dataset, ranking the whole database."""
    ds, vectors, qrows = loaded.setdefault(name, load_set(name))
    pipe = pipeline_for(chain)
    store = index(pipe, vectors)
    qv = pipe.prepare(vectors[qrows])
    rels, nrel = [], []
    for qi, q in enumerate(ds.queries):
        scores, got = pipe.search(store, qv[qi:qi + 1], len(vectors))
        full = np.full(len(vectors), -np.inf)
        ok = got[0] >= 0
        full[got[0][ok]] = scores[0][ok]
        rels.append(ranked_relevance(full, ds.db_ids, set(q.relevant), set(q.junk)))
        nrel.append(len(set(q.relevant) - set(q.junk)))
    return summarise(rels, nrel)["mAP"]


def synthetic_10k(caltech: np.ndarray, seed: int = 0) -> np.ndarray:
    """The caltech descriptors plus noisy copies up to 10,000 (keeps a real neighbour structure)."""
    rng = np.random.default_rng(seed)
    extra = caltech[rng.integers(0, len(caltech), 10_000 - len(caltech))]
    out = np.vstack([caltech, extra + rng.normal(0, 0.02, extra.shape).astype(np.float32)])
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def latency_ms(chain: str, vectors: np.ndarray, k: int = 100, n_queries: int = 60) -> float:
    """Median added time per single query (ms): pipeline search with the steps minus without.

    FAISS runs single-threaded here: on the shared 2-core machine its OpenMP threads spin
    against other processes and a 10k search swings from ~15 to ~85 ms.
    """
    faiss.omp_set_num_threads(1)
    pipe, base = pipeline_for(chain), pipeline_for("none")
    store = index(pipe, vectors)
    rng = np.random.default_rng(1)
    qs = vectors[rng.choice(len(vectors), n_queries, replace=False)]
    with_steps, without = [], []
    for q in qs:
        for p, out in ((base, without), (pipe, with_steps)):
            t = time.perf_counter()
            p.search(store, q[None], k)
            out.append(time.perf_counter() - t)
    return 1000 * (float(np.median(with_steps)) - float(np.median(without)))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("-r", "--rerank", action="append", help="chain like dba+aqe (repeatable)")
    ap.add_argument("--sets", default="holidays300,caltech101_97")
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args()
    chains = ["none"] + (args.rerank or DEFAULT_CHAINS)
    sets = args.sets.split(",")
    loaded: dict = {}
    big = None if args.no_latency else synthetic_10k(load_set("caltech101_97")[1])
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    print("| base | re-ranker | " + " | ".join(f"{s} mAP" for s in sets) + " | added ms/query @10k |")
    print("|---|---|" + "---|" * len(sets) + "---|")
    for chain in chains:
        maps = [evaluate(s, chain, loaded) for s in sets]
        lat = "-" if big is None or chain == "none" else f"{latency_ms(chain, big):.1f}"
        print(f"| gem | {chain} | " + " | ".join(f"{m:.4f}" for m in maps) + f" | {lat} |",
              flush=True)


if __name__ == "__main__":
    main()
