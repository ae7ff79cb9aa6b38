"""Benchmark of the local-feature methods on holidays300: sift-bow, orb-bow, sift-vlad, default(+sv).

Local features are extracted once and cached under ~/.cache/lookalike/local/ (npz per dataset and
detector settings), so reruns only pay for vocabularies and scoring.

    nice -n 10 env PYTHONPATH=src .venv/bin/python bench/local_bench.py --data ../shared/datasets
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.config import cache_dir
from lookalike.features.local.keypoints import LocalFeatures, make_detector


def load_rgb(path: Path) -> np.ndarray:
    try:
        from lookalike.io import load_image
    except ImportError:  # before io.py exists
        return np.asarray(Image.open(path).convert("RGB"))
    return load_image(path)


def dataset(root: Path, name: str) -> tuple[dict, list[Path]]:
    gt = json.loads((root / name / "gt.json").read_text())
    db_dir = root / name / gt["db_dir"]
    return gt, [db_dir / e["file"] for e in gt["db"]]


def cached_features(tag: str, paths: list[Path], kind: str, max_kpts: int, min_side: int | None,
                    log_every: int = 100) -> list[LocalFeatures]:
    """Detect on every path (or read the cache ``local/{tag}_{kind}_{max_kpts}_{min_side}.npz``)."""
    f = cache_dir() / "local" / f"{tag}_{kind}_{max_kpts}_{min_side}.npz"
    if f.exists():
        z = np.load(f)
        off, kp, de, sz = z["offsets"], z["kpts"], z["desc"], z["sizes"]
        return [LocalFeatures(kind, kp[off[i]:off[i + 1]], de[off[i]:off[i + 1]], tuple(sz[i]))
                for i in range(len(off) - 1)]
    det = make_detector(kind, max_kpts=max_kpts, min_side=min_side)
    feats, t0 = [], time.time()
    for i, p in enumerate(paths):
        feats.append(det.detect(load_rgb(p)))
        if log_every and (i + 1) % log_every == 0:
            print(f"  {tag} {kind}: {i + 1}/{len(paths)} images, {time.time() - t0:.0f} s", flush=True)
    off = np.cumsum([0] + [len(x) for x in feats])
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.stem + ".tmp.npz")
    np.savez(tmp, offsets=off, kpts=np.concatenate([x.kpts for x in feats]),
             desc=np.concatenate([x.desc for x in feats]), sizes=np.array([x.image_size for x in feats]))
    tmp.replace(f)
    return feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--extract-only", action="store_true")
    args = ap.parse_args()
    gt, hol = dataset(args.data, "holidays300")
    _, fl = dataset(args.data, "flickr8k_1k")
    for kind, mk, ms in (("sift", 2000, 650), ("orb", 2000, 650)):
        cached_features("holidays300", hol, kind, mk, ms)
        cached_features("flickr8k_1k", fl, kind, mk, ms)
    if args.extract_only:
        return


if __name__ == "__main__":
    main()
