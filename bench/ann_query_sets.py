"""Recall of a saved IVF store, per ``nprobe``, on three query sets drawn the same way:

    PYTHONPATH=src:bench python bench/ann_query_sets.py --store-dir DIR --n 1000000 [--count 1500]

- ``bench``: ``ann_bench.py``'s fixed 1,000 queries;
- ``fresh``: ``--count`` new queries from the same mixture (another random stream);
- ``own``: ``--count`` of the store's own vectors, each one's own row left out (what ``auto``'s
  tuner measures; ``store/tuning.py``).

True neighbours come from the store's exact scan. It shows whether the tuner's recall estimate
and the benchmark's fixed query set agree with new queries.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from ann_bench import Mixture
from lookalike.store.factory import load_store
from lookalike.store.tuning import _recall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store-dir", required=True)
    p.add_argument("--n", type=int, required=True, help="vectors in the store (the mixture's size)")
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--count", type=int, default=1500)
    p.add_argument("--nprobe", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32])
    a = p.parse_args()
    store = load_store(a.store_dir)
    mix = Mixture(a.dim, a.n)
    ids = np.sort(store.ids())
    own_ids = np.sort(np.random.default_rng(1).choice(ids, a.count, replace=False))
    sets = {"bench": (mix.queries(1000), None), "fresh": (mix.sample(a.count, stream=10**6 + 7), None),
            "own": (store.reconstruct(own_ids), own_ids)}
    out = {"n": a.n, "count": a.count, "recall@10": {}}
    for name, (q, own) in sets.items():
        k = 11 if own is not None else 10  # own vectors: their own row comes back and is left out
        truth = store.exact_search(q, k)[1]
        qids = own if own is not None else np.full(len(q), -2)  # -2: no row to leave out
        row = {}
        for nprobe in a.nprobe:
            store.nprobe = nprobe
            row[nprobe] = round(_recall(store.search(q, k)[1], truth, qids, 10), 4)
        out["recall@10"][name] = row
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
