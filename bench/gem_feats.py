"""The ``gem`` pipeline's raw descriptors and ImageNet logits of a benchmark dataset's database.

Several benchmarks start from the same vectors: GeM on EfficientNet-Lite2, long side 352, one scale
(what ``DeepExtractor(aggregator="gem", max_side=352)`` gives). They are extracted once and kept in
``~/.cache/lookalike/shared_feats/{name}_gem_lite2_352.npz`` (``ids``, ``vectors``, ``logits``, in
``gt.json`` database order).

    PYTHONPATH=src python bench/gem_feats.py ../shared/datasets/holidays300 [...]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from lookalike.config import cache_dir
from lookalike.eval.dataset import Dataset


def feature_file(name: str) -> Path:
    return cache_dir() / "shared_feats" / f"{name}_gem_lite2_352.npz"


def load(ds: Dataset | str | Path) -> dict[str, np.ndarray]:
    """``{"ids", "vectors", "logits"}`` of the database, extracted on first use."""
    if not isinstance(ds, Dataset):
        ds = Dataset.load(ds)
    f = feature_file(ds.name)
    if f.exists():
        z = dict(np.load(f))
        if [str(i) for i in z["ids"]] == ds.db_ids:
            return z
    from lookalike.features.deep import DeepExtractor

    ex = DeepExtractor("efficientnet-lite2", "gem", max_side=352)
    vecs, logits, t0, done = [], [], time.perf_counter(), 0
    for prepared in ex.iter_prepared(ds.db_paths, batch=16):
        v, lg = ex._describe_prepared(prepared)
        vecs.append(v)
        logits.append(lg)
        done += len(prepared)
        if done % 800 < 16:
            print(f"  {ds.name}: {done}/{len(ds.db_paths)} images, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    z = {"ids": np.array(ds.db_ids), "vectors": np.vstack(vecs).astype(np.float32),
         "logits": np.vstack(logits).astype(np.float32)}
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.stem + ".tmp.npz")
    np.savez(tmp, **z)
    tmp.replace(f)
    return z


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        z = load(arg)
        print(f"{arg}: {z['vectors'].shape} -> {feature_file(Dataset.load(arg).name)}")
