"""Extraction speed: lookalike (ONNX Runtime, threaded decoding) vs a plain PyTorch eager loop.

Both describe the same images (300 holidays300 + 200 caltech101_97 from ../shared/datasets, or
synthetic photos when those are missing) with EfficientNet-Lite2 at the same input sizes, in
batches of up to 16 equal-shape images, decoding included. ``--pipeline gem``: GeM at long side
352; ``--pipeline default``: R-MAC and GeM pooled from passes at scales 1 and sqrt(2) of 352,
concatenated (the ``default`` pipeline's raw descriptor, before its whitening).

    nice -n 10 python bench/extract_speed.py [--n 500] [--pipeline default]
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

from lookalike.features.aggregators import AGGREGATORS
from lookalike.features.backbone import load_torch_backbone
from lookalike.features.deep import DeepExtractor, resize_max_side
from lookalike.io import load_image as load_rgb
from lookalike.vectors import l2n

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


# what each --pipeline pools, and at which scales of the long side
SETUPS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "gem": (("gem",), (1.0,)),
    "default": (("rmac", "gem"), (1.0, 1.4142)),
}


def fuse(parts: list[np.ndarray]) -> np.ndarray:
    """Each part L2-normalised, concatenated with equal weight (unit norm)."""
    return (np.hstack([l2n(p) for p in parts]) / np.sqrt(len(parts))).astype(np.float32)


def run_lookalike(paths: list[Path], side: int, batch: int, setup: str) -> tuple[float, np.ndarray]:
    aggs, scales = SETUPS[setup]
    exs = [DeepExtractor("efficientnet-lite2", a, max_side=side, scales=scales) for a in aggs]
    exs[0].net  # session start-up is not timed (it is paid once per process)
    out = []
    t = time.perf_counter()
    for prepared in exs[0].iter_prepared(paths, batch=batch):
        both, _ = exs[0]._describe_prepared(prepared, others=exs[1:])
        out.append(fuse(np.split(both, len(exs), axis=1)))
    return len(paths) / (time.perf_counter() - t), np.vstack(out)


def run_torch(paths: list[Path], side: int, batch: int, setup: str) -> tuple[float, np.ndarray]:
    import torch

    aggs, scales = SETUPS[setup]
    tb = load_torch_backbone("efficientnet-lite2")
    net = tb.module.eval()
    totals = [np.zeros((len(paths), 1280), np.float32) for _ in aggs]
    t = time.perf_counter()
    for s in range(0, len(paths), batch):  # same chunks and equal-shape groups as lookalike
        decoded = [load_rgb(p, 2 * round(side * max(scales))) for p in paths[s:s + batch]]
        for scale in scales:
            chunk = [resize_max_side(im, max(32, round(side * scale))) for im in decoded]
            groups: dict[tuple[int, int], list[int]] = {}
            for i, im in enumerate(chunk):
                groups.setdefault(im.shape[:2], []).append(i)
            for idxs in groups.values():
                x = np.stack([(chunk[i].astype(np.float32) - tb.mean) / tb.std for i in idxs]).transpose(0, 3, 1, 2)
                with torch.inference_mode():
                    fmap, _ = net(torch.from_numpy(np.ascontiguousarray(x)))
                for total, agg in zip(totals, aggs):
                    total[[s + i for i in idxs]] += l2n(AGGREGATORS.get(agg)(fmap.numpy()))
    return len(paths) / (time.perf_counter() - t), fuse(totals)


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
    ap.add_argument("--pipeline", choices=sorted(SETUPS), default="gem")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, source = image_paths(args.n, args.data, Path(tmp))
        rate_l, v_l, peak_l = in_child(run_lookalike, paths, args.side, args.batch, args.pipeline)
        rate_t, v_t, peak_t = in_child(run_torch, paths, args.side, args.batch, args.pipeline)
    agree = float(np.min(np.sum(v_l * v_t, axis=1)))
    print(f"{datetime.date.today()} {len(paths)} images ({source}), EfficientNet-Lite2, long side {args.side}, "
          f"batch {args.batch}, {' + '.join(SETUPS[args.pipeline][0])} at scales {SETUPS[args.pipeline][1]}")
    print(f"lookalike (ONNX Runtime): {rate_l:.2f} img/s   peak RSS {peak_l:.0f} MB")
    print(f"PyTorch eager:            {rate_t:.2f} img/s   peak RSS {peak_t:.0f} MB")
    print(f"ratio: {rate_l / rate_t:.2f}x   min cosine between the two descriptors: {agree:.5f}")


if __name__ == "__main__":
    main()
