"""INT8 EfficientNet-Lite2: is a quantised backbone faster on this CPU, and what does it cost in mAP?

Quantises the cached FP32 ONNX export with ONNX Runtime (static, QDQ, per-channel INT8 weights,
UINT8 activations, calibrated on ``--calib`` flickr8k_1k images at both of ``default``'s input sizes;
or dynamic), then on one thread times both models at long sides 352 and 498 (CPU ms per image) and,
with ``--eval``, runs ``lookalike eval``'s scoring with the INT8 session in place of the FP32 one
(descriptors extracted afresh in a scratch cache folder).

    PYTHONPATH=src python bench/int8_backbone.py [--calib 32] [--mode static|dynamic] [--eval gem default]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lookalike.features.backbone import OnnxBackbone
from lookalike.features.deep import resize_max_side
from lookalike.io import load_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SIDES = (352, 498)


def images(data: Path, name: str, n: int, offset: int = 0) -> list[np.ndarray]:
    gt = json.loads((data / name / "gt.json").read_text())
    files = [data / name / gt.get("db_dir", "images") / d["file"] for d in gt["db"]]
    return [load_image(f) for f in files[offset:offset + n]]


def quantise(fp32: Path, out: Path, calib: list[np.ndarray], net: OnnxBackbone, mode: str) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_dynamic, quantize_static)

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    if mode == "dynamic":
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
        return out

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": net.preprocess(resize_max_side(im, side))[None]}
                               for im in calib for side in SIDES])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def session(path: Path):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def cpu_ms(sess, xs: list[np.ndarray]) -> float:
    for x in xs[:2]:
        sess.run(None, {"image": x})
    best = float("inf")
    for _ in range(2):
        c = time.process_time()
        for x in xs:
            sess.run(None, {"image": x})
        best = min(best, (time.process_time() - c) * 1000 / len(xs))
    return best


def evaluate_with(onnx_path: Path, spec: str, dataset: Path) -> dict:
    """``lookalike eval``'s scoring, every backbone session of the pipeline replaced by ``onnx_path``."""
    from lookalike.engine import runners
    from lookalike.eval.runner import evaluate
    from lookalike.pipelines.spec import parse_spec

    pipe = runners._pipeline(runners.describer_key(parse_spec(spec, {})), None, None)
    ex = pipe.extractor
    for part in ([ex.first, ex.second] if hasattr(ex, "first") else [ex]):
        part.net._sess = session(onnx_path)
    return evaluate(dataset, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--mode", choices=["static", "dynamic"], default="static")
    ap.add_argument("--eval", nargs="*", default=[], help="pipelines to score with the INT8 model")
    ap.add_argument("--datasets", nargs="+", default=["holidays300", "caltech101_97"])
    args = ap.parse_args()
    net = OnnxBackbone("efficientnet-lite2")
    work = Path(tempfile.mkdtemp(prefix="int8-"))
    t = time.perf_counter()
    int8 = quantise(net.onnx_path, work / "lite2-int8.onnx", images(args.data, "flickr8k_1k", args.calib), net, args.mode)
    print(f"{args.mode} quantisation on {args.calib} flickr8k_1k images: {time.perf_counter() - t:.0f} s, "
          f"{net.onnx_path.stat().st_size / 1e6:.1f} MB -> {int8.stat().st_size / 1e6:.1f} MB; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    test = images(args.data, "holidays300", 16, offset=100)
    fp, q8 = session(net.onnx_path), session(int8)
    for side in SIDES:
        xs = [net.preprocess(resize_max_side(im, side))[None] for im in test]
        a, b = fp.run(None, {"image": xs[0]})[0], q8.run(None, {"image": xs[0]})[0]
        gem = lambda f: np.cbrt((np.maximum(f, 1e-6) ** 3).mean(axis=(2, 3)))[0]  # noqa: E731
        cos = float(gem(a) @ gem(b) / np.linalg.norm(gem(a)) / np.linalg.norm(gem(b)))
        print(f"long side {side}: FP32 {cpu_ms(fp, xs):.1f} CPU ms/image, INT8 {cpu_ms(q8, xs):.1f} "
              f"(one thread; GeM cosine FP32 vs INT8 on one image {cos:.4f}); load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for spec in args.eval:
        for name in args.datasets:
            # a scratch cache so that descriptors are extracted afresh with the INT8 model
            cache = Path(tempfile.mkdtemp(prefix="cache-"))
            (cache / "models").symlink_to(net.onnx_path.parent)
            os.environ["LOOKALIKE_CACHE"] = str(cache)
            res = evaluate_with(int8, spec, args.data / name)
            print(f"INT8 {spec} on {name}: mAP {res['mAP']}", flush=True)


if __name__ == "__main__":
    main()
