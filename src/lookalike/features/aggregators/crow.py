"""CroW: cross-dimensional weighting (Kalantidis, Mellina & Osindero 2016).

Spatial weights: the channel-summed map S normalised by its L_a norm and raised to 1/b (a=b=2).
Channel weights: log(Σ_k Q_k / Q_k), Q_k the fraction of non-zero positions of channel k
(an inverse document frequency; channels that never fire get weight 0).
"""
from __future__ import annotations

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext, weighted_sum


def crow_spatial(fmap: np.ndarray, a: float = 2.0, b: float = 2.0) -> np.ndarray:
    """(B, C, H, W) -> (B, H, W) spatial weights."""
    s = fmap.sum(axis=1, dtype=np.float64)
    z = np.power(np.power(s, a).sum(axis=(1, 2), keepdims=True), 1.0 / a)
    return np.power(s / np.maximum(z, 1e-12), 1.0 / b)


def crow_channel(fmap: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(B, C, H, W) -> (B, C) IDF-like channel weights."""
    q = (fmap > eps).mean(axis=(2, 3), dtype=np.float64)
    total = q.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.where(q > 0, np.log(total / np.maximum(q, 1e-12)), 0.0)


@AGGREGATORS.register("crow")
def crow(fmap: np.ndarray, ctx: PoolContext | None = None, *, a: float = 2.0, b: float = 2.0) -> np.ndarray:
    pooled = weighted_sum(fmap, crow_spatial(fmap, a, b))
    return (pooled * crow_channel(fmap)).astype(np.float32)
