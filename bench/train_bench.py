"""Fine-tuning benchmark helper: scores a trained model (or the off-the-shelf tail) on the test
part of a split from the cached trunk maps, without re-extracting the images.

Every test image queries all other test images (same protocols as ``lookalike eval --split
--protocol classes|images``). The trunk is frozen, so trunk maps cached once serve every model
trained with the same cut.

    PYTHONPATH=src python bench/train_bench.py ../shared/datasets/ucmerced16 \
        --split ../shared/datasets/ucmerced16/split.json [--protocol images] [--model MODEL]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--split", required=True)
    ap.add_argument("--model", default=None, help="model folder; omitted: the packaged weights")
    ap.add_argument("--protocol", choices=("classes", "images"), default="classes")
    ap.add_argument("--train-blocks", type=int, default=None, help="default: the model's (0 without one)")
    ap.add_argument("--max-side", type=int, default=352)
    args = ap.parse_args()

    import torch

    from lookalike.train.data import Labelled, read_labelled
    from lookalike.train.loop import describe, leave_one_out_map
    from lookalike.train.network import Tail, split_backbone, trunk_onnx
    from lookalike.train.views import TrunkCache

    t0 = time.perf_counter()
    torch.set_num_threads(2)
    spec = None
    if args.model:
        from lookalike.train import load_model

        spec = load_model(args.model)
    blocks = args.train_blocks
    if blocks is None:
        blocks = spec.info.get("training", {}).get("config", {}).get("train_blocks", 1) if spec else 0
    base, cut = split_backbone("efficientnet-lite2", blocks)
    cache = TrunkCache(trunk_onnx(base, cut), args.max_side)  # the frozen trunk is the packaged one
    tb, _ = split_backbone("efficientnet-lite2", blocks, str(spec.weights) if spec else None)
    tail = Tail(tb.module.net, cut, p=spec.p if spec else 3.0).eval()
    split = json.load(open(args.split))
    data = read_labelled(args.dataset)
    if args.protocol == "classes":
        data = data.subset(set(split["test_classes"]))
    else:
        keep = {f"{c}/{Path(p).stem}" for p, c in zip(data.paths, data.labels)} & set(split["test_images"])
        rows = [i for i, (p, c) in enumerate(zip(data.paths, data.labels)) if f"{c}/{Path(p).stem}" in keep]
        data = Labelled([data.paths[i] for i in rows], [data.labels[i] for i in rows])
    maps = cache.maps(data.paths, 1)[0]
    d = describe(tail, maps).numpy()
    if spec is not None:
        for step in spec.post_steps():
            d = step.apply(d)
    names = {c: i for i, c in enumerate(data.classes())}
    mAP, p10 = leave_one_out_map(d, np.array([names[c] for c in data.labels]))
    print(json.dumps({"model": args.model or "off-the-shelf", "protocol": args.protocol, "test_images": len(data), "mAP": round(mAP, 4),
                      "P@10": round(p10, 4), "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
