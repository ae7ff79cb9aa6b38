"""PWA: part-based weighting aggregation (Xu et al. 2018).

A fixed set of discriminative channels acts as part detectors: each selected channel's map,
normalised (L2 over positions, square root), weights a sum pooling of all channels; the per-part
vectors are L2-normalised and concatenated (parts × C dimensions). The channels are those with the
largest variance of their pooled response over a sample of images (``select_channels``); pass them
as ``channels`` (the extractor stores them in its config). Without ``channels``, the first
``parts`` channels of ``DEFAULT_CHANNELS`` are used.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext, weighted_sum
from lookalike.vectors import l2n

# The 32 channels of EfficientNet-Lite2's last conv map whose GeM-pooled response (max side 352)
# varies most over the 1000 Flickr8k images (a collection independent of the benchmarks).
DEFAULT_CHANNELS: tuple[int, ...] = (
    579, 17, 127, 1258, 679, 526, 505, 376, 95, 314, 1158, 625, 566, 333, 369, 946,
    194, 826, 265, 360, 152, 1009, 766, 113, 738, 32, 1098, 771, 115, 474, 965, 1175)


def select_channels(pooled: np.ndarray, parts: int) -> list[int]:
    """The ``parts`` channels whose pooled response (N, C) varies most across images."""
    var = np.asarray(pooled, np.float64).var(axis=0)
    return [int(i) for i in np.argsort(-var, kind="stable")[:parts]]


@AGGREGATORS.register("pwa")
def pwa(fmap: np.ndarray, ctx: PoolContext | None = None, *, parts: int = 4,
        channels: Sequence[int] | None = None) -> np.ndarray:
    chans = list(channels) if channels is not None else list(DEFAULT_CHANNELS[:parts])
    b, c = fmap.shape[:2]
    out = np.empty((b, len(chans) * c), np.float32)
    for j, k in enumerate(chans):
        m = fmap[:, k].astype(np.float64)
        weights = np.sqrt(m / np.maximum(np.sqrt((m**2).sum(axis=(1, 2), keepdims=True)), 1e-12))
        out[:, j * c:(j + 1) * c] = l2n(weighted_sum(fmap, weights))
    return out
