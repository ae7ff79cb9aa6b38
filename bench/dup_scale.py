"""Duplicate search at scale: the candidate searches and the grouping on synthetic descriptors.

    PYTHONPATH=src python bench/dup_scale.py [--n 100000] [--dim 2048] [--copies 0.02] [--json]

Vectors are ``bench/ann_bench.py``'s clustered real-like unit vectors; a share ``--copies`` of them
get a planted copy (the vector plus noise that keeps cosine ~0.95) and every image a 64-bit hash
for each of its eight orientations (a copy's differs from its original's by a few bits). Timed:
the descriptor range search (``engine.duplicates.descriptor_pairs``), the perceptual-hash range
search (``phash_pairs``) and the grouping (wall time, and the process's CPU time, which a shared
machine's load disturbs less), with the peak memory (sampled) while they run, the
vectors included. Image reading and
alignment are not part of it (synthetic vectors have no images): their cost per verified pair is
measured by ``bench/dup_bench.py``. ``exact_candidates_found_sample``: the share of the exact
candidates (each row's ``PER_IMAGE`` most similar above the radius) that the search returned, on 300
sampled rows (an approximate search runs above ``EXACT_SEARCH_UP_TO`` images).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from ann_bench import Mixture  # noqa: E402

from lookalike.engine import duplicates as dup  # noqa: E402


def _found(truth: np.ndarray, pairs: np.ndarray, n: int) -> float:
    """Share of the (a, b) rows of ``truth`` (a < b) among ``pairs``."""
    return float(np.isin(truth[:, 0] * n + truth[:, 1], pairs[:, 0] * n + pairs[:, 1]).mean()) if len(truth) else 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--copies", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    faiss.omp_set_num_threads(a.threads)
    rng = np.random.default_rng(1)
    n_copies = int(a.n * a.copies)
    n_orig = a.n - n_copies
    mix = Mixture(a.dim, n_orig)
    vecs = np.empty((a.n, a.dim), np.float32)
    for start, x in mix.chunks(n_orig):
        vecs[start:start + len(x)] = x
    src = rng.choice(n_orig, n_copies, replace=False)
    for k in range(0, n_copies, 5000):
        s = src[k:k + 5000]
        noise = rng.standard_normal((len(s), a.dim), dtype=np.float32) * np.float32(0.33 / np.sqrt(a.dim))
        v = vecs[s] + noise
        vecs[n_orig + k:n_orig + k + len(s)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    hashes = rng.integers(0, 2**63, (a.n, 8), dtype=np.int64).astype(np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (n_copies, 3)).astype(np.uint64)
    hashes[n_orig:, 0] = hashes[src, 0] ^ flips[:, 0] ^ flips[:, 1] ^ flips[:, 2]
    ids = np.arange(a.n, dtype=np.int64)
    truth = np.stack([src, n_orig + np.arange(n_copies)], 1).astype(np.int64)
    del noise, v, mix
    gc.collect()
    load = os.getloadavg()
    proc = psutil.Process()
    base_rss = proc.memory_info().rss
    peak = [base_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    dpairs, cos = dup.descriptor_pairs(ids, vecs, dup.DESCRIPTOR_RADIUS)
    t1 = time.perf_counter()
    hpairs, _, _ = dup.phash_pairs(ids, hashes)
    t2 = time.perf_counter()
    close = cos >= 0.9
    edges = {(a, b): dup.Pair(a, b, "edited", v) for (a, b), v in zip(dpairs[close].tolist(), cos[close].tolist())}
    rows = {i: type("Row", (), dict(path=f"/x/{i}.jpg", width=1, height=1, size=1, mtime=0.0))() for i in
            {i for k in edges for i in k}}
    groups = dup._group(edges, rows, "resolution", [])
    t3 = time.perf_counter()
    cpu = time.process_time() - cpu0
    done.set()
    sampler.join()
    # how many of the exact candidates (each row's PER_IMAGE most similar above the radius) the
    # search found, on a sample of rows
    sample = np.random.default_rng(2).choice(a.n, 300, replace=False)
    sims = vecs[sample] @ vecs.T
    sims[np.arange(len(sample)), sample] = -1
    top = np.argsort(-sims, axis=1)[:, :dup.PER_IMAGE]
    want = [(min(int(r), int(c)), max(int(r), int(c))) for r, row, s in zip(sample, top, sims) for c in row
            if s[c] >= dup.DESCRIPTOR_RADIUS]
    coverage = _found(np.array(want, np.int64).reshape(-1, 2), dpairs, a.n)
    out = {"n": a.n, "dim": a.dim, "planted_copies": n_copies, "threads": a.threads, "load_before": load,
           "descriptor_s": round(t1 - t0, 1), "phash_s": round(t2 - t1, 1), "group_s": round(t3 - t2, 2),
           "total_s": round(t3 - t0, 1), "cpu_s": round(cpu, 1), "descriptor_candidates": len(dpairs), "phash_candidates": len(hpairs),
           "planted_found_by_descriptors": _found(truth, dpairs, a.n),
           "planted_found_by_phash": _found(truth, hpairs, a.n), "groups": len(groups),
           "exact_candidates_found_sample": round(coverage, 4),
           "rss_before_search_mb": round(base_rss / 2**20), "peak_rss_during_search_mb": round(peak[0] / 2**20),
           "peak_rss_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "vectors_mb": round(vecs.nbytes / 2**20), "load_after": os.getloadavg()}
    print(json.dumps(out, indent=None if a.json else 1))


if __name__ == "__main__":
    main()
