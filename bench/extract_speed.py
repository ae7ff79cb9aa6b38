"""Extraction speed: lookalike (ONNX Runtime, threaded decoding) vs a plain PyTorch eager loop.

Both describe the same images (300 holidays300 + 200 caltech101_97 from ../shared/datasets, or
synthetic photos when those are missing) with EfficientNet-Lite2 at the same input sizes (long
side 352), in batches of up to 16 equal-shape images, decoding included; GeM descriptors.

    nice -n 10 python bench/extract_speed.py [--n 500]
"""
from __future__ import annotations

import argparse
import datetime
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.features.aggregators.gem import gem
from lookalike.features.backbone import load_torch_backbone
from lookalike.features.deep import DeepExtractor, l2n, load_rgb, resize_max_side

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def image_paths(n: int, data: Path, tmp: Path) -> tuple[list[Path], str]:
    """n real images (holidays first, then caltech evenly spread), or synthetic ones."""
    paths: list[Path] = []
    for name, share in (("holidays300", 0.6), ("caltech101_97", 1.0)):
        gt = data / name / "gt.json"
        if gt.exists():
            g = json.loads(gt.read_text())
            files = [data / name / g.get("db_dir", "images") / d["file"] for d in g["db"]]
            want = round(n * share) - len(paths)
            step = max(1, len(files) // max(want, 1))
            paths += files[::step][:want]
    if len(paths) == n:
        return paths, "holidays300 + caltech101_97"
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = (320, 240) if i % 3 else (240, 320)
        p = tmp / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths[:n], "synthetic"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_lookalike(paths: list[Path], side: int, batch: int) -> tuple[float, np.ndarray]:
    ex = DeepExtractor("efficientnet-lite2", "gem", max_side=side)
    ex.net  # session start-up is not timed (it is paid once per process)
    t = time.perf_counter()
    out = ex.describe_paths(paths, batch=batch)
    return len(paths) / (time.perf_counter() - t), out


def run_torch(paths: list[Path], side: int, batch: int) -> tuple[float, np.ndarray]:
    import torch

    tb = load_torch_backbone("efficientnet-lite2")
    net = tb.module.eval()
    out = np.zeros((len(paths), 1280), np.float32)
    t = time.perf_counter()
    for s in range(0, len(paths), batch):  # same chunks and equal-shape groups as lookalike
        chunk = [resize_max_side(load_rgb(p, 2 * side), side) for p in paths[s:s + batch]]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(chunk):
            groups.setdefault(im.shape[:2], []).append(i)
        for idxs in groups.values():
            x = np.stack([(chunk[i].astype(np.float32) - tb.mean) / tb.std for i in idxs]).transpose(0, 3, 1, 2)
            with torch.inference_mode():
                fmap, _ = net(torch.from_numpy(np.ascontiguousarray(x)))
            out[[s + i for i in idxs]] = l2n(gem(fmap.numpy()))
    return len(paths) / (time.perf_counter() - t), out


def _measured(fn, *a):
    rate, vectors = fn(*a)
    return rate, vectors, peak_mb()


def in_child(fn, *a) -> tuple[float, np.ndarray, float]:
    """Run one side in a fresh process, so its peak memory is its own."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, *a).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--side", type=int, default=352)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, source = image_paths(args.n, args.data, Path(tmp))
        rate_l, v_l, peak_l = in_child(run_lookalike, paths, args.side, args.batch)
        rate_t, v_t, peak_t = in_child(run_torch, paths, args.side, args.batch)
    agree = float(np.min(np.sum(v_l * v_t, axis=1)))
    print(f"{datetime.date.today()} {len(paths)} images ({source}), EfficientNet-Lite2, long side {args.side}, "
          f"batch {args.batch}")
    print(f"lookalike (ONNX Runtime): {rate_l:.2f} img/s   peak RSS {peak_l:.0f} MB")
    print(f"PyTorch eager:            {rate_t:.2f} img/s   peak RSS {peak_t:.0f} MB")
    print(f"ratio: {rate_l / rate_t:.2f}x   min cosine between the two descriptors: {agree:.5f}")


if __name__ == "__main__":
    main()
