"""Re-ranking benchmark: mAP on holidays300 and caltech101_97, and added query latency at 10k.

Features are the cached GeM EfficientNet-Lite2 (max side 352) descriptors under
``~/.cache/lookalike/shared_feats/`` (queries of both sets are database images).

    PYTHONPATH=src python bench/rerank_bench.py                       # the default table
    PYTHONPATH=src python bench/rerank_bench.py -r "aqe:alpha=0,min_sim=-1,n=3" -r dba+aqe
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lookalike.config import cache_dir
from lookalike.index.flat import FlatStore
from lookalike.rerank import RERANKERS, Reranker

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
DEFAULT_CHAINS = ["aqe", "dba", "dba+aqe", "krnn", "diffusion", "dba+krnn", "dba+aqe+krnn"]


def parse_chain(spec: str) -> list[Reranker]:
    """``"dba:n=5+aqe:alpha=3"`` -> re-ranker objects."""
    steps = []
    for part in spec.split("+"):
        name, _, args = part.partition(":")
        params = {}
        for kv in filter(None, args.split(",")):
            k, v = kv.split("=")
            params[k] = float(v) if "." in v or "e" in v else int(v)
        steps.append(RERANKERS.get(name)(**params))
    return steps


def load_set(name: str) -> tuple[np.ndarray, list[int], list[np.ndarray], list[np.ndarray]]:
    """Database vectors (db order), query positions, relevant and junk positions per query."""
    gt = json.loads((DATA / name / "gt.json").read_text())
    feats = np.load(cache_dir() / "shared_feats" / f"{name}_gem_lite2_352.npz")
    pos = {str(i): p for p, i in enumerate(feats["ids"])}
    assert [d["id"] for d in gt["db"]] == [str(i) for i in feats["ids"]], "db order differs"
    by_file = {f"{gt['db_dir']}/{d['file']}": pos[d["id"]] for d in gt["db"]}
    qpos, rel, junk = [], [], []
    for q in gt["queries"]:
        qpos.append(by_file[q["image"]])
        rel.append(np.array([pos[r] for r in q["relevant"]], np.int64))
        junk.append(np.array([pos[j] for j in q.get("junk", [])], np.int64))
    return feats["vectors"].astype(np.float32), qpos, rel, junk


def average_precision(scores: np.ndarray, ids: np.ndarray, rel: np.ndarray, junk: np.ndarray) -> float:
    """AP over the full ranking; junk dropped; ties broken by database position."""
    keep = (ids >= 0) & ~np.isin(ids, junk)
    s, i = scores[keep], ids[keep]
    ranked = i[np.lexsort((i, -s))]
    hits = np.isin(ranked, rel)
    if not len(rel):
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    return float(np.sum(np.arange(1, len(ranks) + 1) / ranks) / len(rel))


def build(vectors: np.ndarray, chain: list[Reranker]) -> FlatStore:
    ids = np.arange(len(vectors), dtype=np.int64)
    v = vectors
    for step in chain:
        step.fit(ids, v)
        v = step.transform_database(ids, v)
    store = FlatStore(vectors.shape[1])
    store.add(ids, v)
    return store


def run_chain(store: FlatStore, queries: np.ndarray, k: int, chain: list[Reranker]):
    s, i = store.search(queries, k)
    for step in chain:
        s, i = step.rerank(queries, s, i, store)
    return s, i


def evaluate(name: str, spec: str) -> float:
    vectors, qpos, rel, junk = load_set(name)
    chain = parse_chain(spec) if spec != "none" else []
    store = build(vectors, chain)
    queries = vectors[qpos]
    aps = []
    for a in range(0, len(queries), 64):
        s, i = run_chain(store, queries[a:a + 64], len(vectors), chain)
        for r in range(len(s)):
            aps.append(average_precision(s[r], i[r], rel[a + r], junk[a + r]))
    return float(np.mean(aps))


def synthetic_10k(seed: int = 0) -> np.ndarray:
    """The caltech descriptors plus noisy copies up to 10,000 (realistic neighbour structure)."""
    vectors = load_set("caltech101_97")[0]
    rng = np.random.default_rng(seed)
    extra = vectors[rng.integers(0, len(vectors), 10_000 - len(vectors))]
    extra = extra + rng.normal(0, 0.02, extra.shape).astype(np.float32)
    out = np.vstack([vectors, extra])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def latency_ms(spec: str, vectors: np.ndarray, k: int = 100, n_queries: int = 50) -> float:
    """Median added time per single query (ms) of the chain after a top-k search."""
    chain = parse_chain(spec) if spec != "none" else []
    store = build(vectors, chain)
    rng = np.random.default_rng(1)
    qs = vectors[rng.choice(len(vectors), n_queries, replace=False)]
    times = []
    for q in qs:
        s, i = store.search(q[None], k)
        t = time.perf_counter()
        for step in chain:
            s, i = step.rerank(q[None], s, i, store)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", "--rerank", action="append", help="chain like dba+aqe (repeatable)")
    ap.add_argument("--sets", default="holidays300,caltech101_97")
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args()
    chains = ["none"] + (args.rerank or DEFAULT_CHAINS)
    sets = args.sets.split(",")
    big = None if args.no_latency else synthetic_10k()
    print("| base | re-ranker | " + " | ".join(f"{s} mAP" for s in sets) + " | added ms/query @10k |")
    print("|---|---|" + "---|" * len(sets) + "---|")
    for spec in chains:
        maps = [evaluate(s, spec) for s in sets]
        lat = "-" if big is None else f"{latency_ms(spec, big):.1f}"
        print(f"| gem-lite2-352 | {spec} | " + " | ".join(f"{m:.4f}" for m in maps) + f" | {lat} |",
              flush=True)


if __name__ == "__main__":
    main()
