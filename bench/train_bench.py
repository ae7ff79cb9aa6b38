"""Fine-tuning benchmark helper: scores a trained model (or the off-the-shelf tail) on the unseen
test classes of a split from the cached trunk maps, without re-extracting the images.

Every test image queries all other test images (same protocol as ``lookalike eval --split``).
The trunk is frozen, so trunk maps cached once serve every model trained with the same cut.

    PYTHONPATH=src python bench/train_bench.py ../shared/datasets/caltech101_97 \
        --split ../shared/datasets/caltech101_97/split.json [--model MODEL] [--train-blocks 1]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--split", required=True)
    ap.add_argument("--model", default=None, help="model folder; omitted: the packaged weights")
    ap.add_argument("--train-blocks", type=int, default=1)
    ap.add_argument("--max-side", type=int, default=352)
    args = ap.parse_args()

    import torch

    from lookalike.train.data import read_labelled
    from lookalike.train.loop import describe, leave_one_out_map
    from lookalike.train.network import Tail, split_backbone, trunk_onnx
    from lookalike.train.views import TrunkCache

    t0 = time.perf_counter()
    torch.set_num_threads(2)
    spec = None
    if args.model:
        from lookalike.train import load_model

        spec = load_model(args.model)
    base, cut = split_backbone("efficientnet-lite2", args.train_blocks)
    cache = TrunkCache(trunk_onnx(base, cut), args.max_side)  # the frozen trunk is the packaged one
    tb, _ = split_backbone("efficientnet-lite2", args.train_blocks, str(spec.weights) if spec else None)
    tail = Tail(tb.module.net, cut, p=spec.p if spec else 3.0).eval()
    test = set(json.load(open(args.split))["test_classes"])
    data = read_labelled(args.dataset).subset(test)
    maps = cache.maps(data.paths, 1)[0]
    d = describe(tail, maps).numpy()
    if spec is not None:
        for step in spec.post_steps():
            d = step.apply(d)
    names = {c: i for i, c in enumerate(data.classes())}
    mAP, p10 = leave_one_out_map(d, np.array([names[c] for c in data.labels]))
    print(json.dumps({"model": args.model or "off-the-shelf", "test_images": len(data), "mAP": round(mAP, 4),
                      "P@10": round(p10, 4), "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
