"""CAM-weighted pooling (Jiménez, Álvarez & Giró-i-Nieto 2017, class-weighted convolutional features).

For each of the top-``n`` predicted ImageNet classes, its class activation map
(Σ_k w_ck · F_k, clipped at 0 and scaled to max 1) weights a sum pooling of all channels; the
per-class vectors are L2-normalised and summed (C dimensions). Needs ``ctx.logits`` and
``ctx.fc_weight``.
"""
from __future__ import annotations

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext, weighted_sum
from lookalike.vectors import l2n


def class_maps(fmap: np.ndarray, fc_weight: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(B, C, H, W), (K, C), (B, n) class ids -> (B, n, H, W) CAMs in [0, 1]."""
    w = np.asarray(fc_weight, np.float32)[classes]  # (B, n, C)
    cams = np.maximum(np.einsum("bnc,bchw->bnhw", w, fmap.astype(np.float32)), 0.0)
    peak = cams.max(axis=(2, 3), keepdims=True)
    return cams / np.where(peak > 0, peak, 1.0)


def top_classes(logits: np.ndarray, n: int) -> np.ndarray:
    """(B, K) -> (B, n) class ids, best first."""
    return np.argsort(-np.asarray(logits), axis=1, kind="stable")[:, :n]


@AGGREGATORS.register("cam")
def cam(fmap: np.ndarray, ctx: PoolContext | None = None, *, top: int = 5) -> np.ndarray:
    if ctx is None or ctx.logits is None or ctx.fc_weight is None:
        raise ValueError("cam needs ctx.logits and ctx.fc_weight")
    logits = np.asarray(ctx.logits).reshape(len(fmap), -1)
    cams = class_maps(fmap, ctx.fc_weight, top_classes(logits, top))
    out = np.zeros(fmap.shape[:2], np.float32)
    for j in range(cams.shape[1]):
        out += l2n(weighted_sum(fmap, cams[:, j]))
    return out
