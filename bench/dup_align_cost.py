"""CPU time of the copy check per candidate pair, on the copy benchmark's index.

    PYTHONPATH=src python bench/dup_align_cost.py --out /tmp/dupb30 [--pairs 1200] [--pipeline gem]

``--out``: a folder written by ``bench/dup_bench.py`` (its ``index-PIPELINE``). A seeded sample of
the candidate pairs that ``engine.duplicates`` would align (hashes within ``NEAR_BITS``, or cosine at
the pipeline's floor) is checked twice each way: with the early stop (``copies.SURE``) and without
it (``SURE`` above any score); images are prepared beforehand, so only the check itself is timed
(process CPU). Prints the CPU per pair and how many pairs each way accepts at several thresholds.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import lookalike
from lookalike.engine import duplicates as dup
from lookalike.features.hashes import ORIENTATIONS, hamming
from lookalike.features.local import copies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/dup_bench")
    ap.add_argument("--pipeline", default="gem")
    ap.add_argument("--pairs", type=int, default=1200)
    a = ap.parse_args()
    ix = lookalike.open(Path(a.out) / f"index-{a.pipeline}", readonly=True)
    rows = ix.catalog.rows(ix.catalog.ok_ids().tolist())
    _, ph = dup._fingerprints(ix, rows)
    hashed = np.array(sorted(ph), np.int64)
    hp, _, _ = dup.phash_pairs(hashed, np.stack([ph[i] for i in hashed.tolist()]))
    vid, vecs = dup._search_vectors(ix, np.array(sorted(rows), np.int64))
    dp, _ = dup.descriptor_pairs(vid, vecs, dup.DESCRIPTOR_RADIUS)
    row = {i: k for k, i in enumerate(vid.tolist())}
    keys = sorted({tuple(p) for p in hp.tolist()} | {tuple(p) for p in dp.tolist()})
    pick = [keys[i] for i in np.random.default_rng(0).choice(len(keys), min(a.pairs, len(keys)), replace=False)]
    floor = dup.COPY_COSINE.get(ix.spec, -1.0)
    images = dup._Images({i: r.path for i, r in rows.items()})
    jobs = []
    for x, y in pick:
        d = hamming(ph[x], ph[y][0])
        k = int(np.argmin(d))
        near = int(d[k]) <= dup.NEAR_BITS
        if dup.worth_aligning(int(d[k]), float(vecs[row[x]] @ vecs[row[y]]), floor):
            pa, pb = images.get(x), images.get(y)
            if pa is not None and pb is not None:
                jobs.append((pa, pb, ORIENTATIONS[k] if near else None))
    sure = copies.SURE
    out: dict = {"pairs": len(jobs), "near": sum(j[2] is not None for j in jobs), "load_before": os.getloadavg()}
    scores = {}
    for name, level in (("early_stop", sure), ("every_test", 2.0), ("early_stop_again", sure), ("every_test_again", 2.0)):
        copies.SURE = level
        c = time.process_time()
        scores[name] = np.array([copies.compare(pa, pb, o).score for pa, pb, o in jobs])
        out[f"{name}_cpu_ms_per_pair"] = round(1000 * (time.process_time() - c) / max(1, len(jobs)), 2)
    copies.SURE = sure
    out["accepted"] = {str(t): [int((scores[n] >= t).sum()) for n in ("early_stop", "every_test")]
                       for t in (0.985, 0.995, 0.999, 0.9995)}
    out["load_after"] = os.getloadavg()
    ix.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
