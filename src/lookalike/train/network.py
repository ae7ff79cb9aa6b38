"""The backbone cut in two: a frozen trunk (run once per image through ONNX Runtime, its output
cached) and a trainable tail (the last MBConv blocks and the head conv, unless none is trained),
then GeM with a learnable p and a learnable whitening ((x − mean) · P, then L2)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lookalike.config import cache_dir
from lookalike.features.backbone import TorchBackbone, load_torch_backbone


class Trunk(nn.Module):
    """Stem and the first ``cut`` MBConv blocks of an EfficientNet (frozen); with every block
    (``cut`` = their number) the head conv too, so the output is the last conv map."""

    def __init__(self, net: nn.Module, cut: int) -> None:
        super().__init__()
        self.net, self.cut = net, cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:self.cut]:
            x = block(x)
        if self.cut == len(net._blocks):
            x = net._swish(net._bn1(net._conv_head(x)))
        return x


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent p."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class Whiten(nn.Module):
    """A learnable whitening of GeM descriptors, (x − mean) · P then L2 (the ``LearnedWhitening``
    step of a saved model); it starts as the identity or from a given whitening."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Parameter(torch.eye(dim))

    def set(self, mean, proj) -> None:
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.proj.copy_(torch.as_tensor(proj, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize((x - self.mean) @ self.proj, dim=1)


class Tail(nn.Module):
    """The trainable part: trunk output (B, C, h, w) -> L2-normalised GeM descriptor (B, 1280),
    then, when ``whiten``, the learnable whitening.

    With ``cut`` past the last block the trunk already ends with the head conv, and only GeM's p
    (and the whitening) are left to learn. Batch-norm statistics stay frozen (eval mode) since
    training batches are small.
    """

    def __init__(self, net: nn.Module, cut: int, p: float = 3.0, whiten: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(net._blocks[cut:])
        self.head = cut < len(net._blocks)
        if self.head:
            self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish
        self.gem = GeM(p)
        self.white = Whiten(net._conv_head.out_channels) if whiten else None

    def train(self, mode: bool = True) -> "Tail":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def fmap(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.act(self.bn1(self.conv_head(x))) if self.head else x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised GeM descriptor (what the backbone alone gives)."""
        return nn.functional.normalize(self.gem(self.fmap(x)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.pooled(x)
        return self.white(d) if self.white is not None else d


def split_backbone(name: str, train_blocks: int, weights: str | None = None) -> tuple[TorchBackbone, int]:
    """The torch backbone and the index of the first trainable block."""
    tb = load_torch_backbone(name, weights)
    n = len(tb.module.net._blocks)
    if not 0 <= train_blocks <= n:
        raise ValueError(f"train_blocks must be in 0..{n} for {name}")
    return tb, n - train_blocks


def trunk_onnx(tb: TorchBackbone, cut: int) -> Path:
    """The trunk exported to ONNX once (cached by the weights' identity and the cut)."""
    head = "-head" if cut == len(tb.module.net._blocks) else ""
    path = cache_dir() / "models" / f"{tb.name}-{tb.weights_id}-trunk{cut}{head}.onnx"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    trunk = Trunk(tb.module.net, cut).eval()
    x = torch.randn(2, 3, tb.input_side, tb.input_side - 32)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with torch.inference_mode():
        torch.onnx.export(trunk, (x,), str(tmp), input_names=["image"], output_names=["fmap"],
                          dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "fmap": {0: "b", 2: "fh", 3: "fw"}},
                          opset_version=17, dynamo=False)
        ref = trunk(x).numpy()
    import onnxruntime as ort

    got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    if float(np.abs(got - ref).max()) > 1e-3:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export of the {tb.name} trunk differs from PyTorch")
    os.replace(tmp, path)
    return path


def full_state_dict(tb: TorchBackbone) -> dict[str, torch.Tensor]:
    """The whole EfficientNet's weights (the tail shares its modules, so updates are included)."""
    return {k: v.detach().clone() for k, v in tb.module.net.state_dict().items()}
