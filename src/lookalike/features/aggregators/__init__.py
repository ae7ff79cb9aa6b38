"""Pooling methods that turn a conv feature map into one vector; one file and one name each.

Every aggregator has the signature ``pool(fmap (B, C, H, W) float32, ctx, **params) -> (B, D)``
float32 and is registered in ``AGGREGATORS``. The extractor L2-normalises the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lookalike.registry import Registry


@dataclass
class PoolContext:
    """What some aggregations need beyond the feature map (CAM needs the classifier)."""

    logits: np.ndarray | None = None  # (B, 1000)
    fc_weight: np.ndarray | None = None  # (1000, C)
    fc_bias: np.ndarray | None = None  # (1000,)


Aggregator = Callable[..., np.ndarray]  # pool(fmap (B,C,H,W), ctx, **params) -> (B, D)
AGGREGATORS: Registry[Aggregator] = Registry("aggregator")



def weighted_sum(fmap: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum over positions of ``fmap`` (B, C, H, W) weighted by ``weights`` (B, H, W) -> (B, C)."""
    return np.einsum("bchw,bhw->bc", fmap.astype(np.float32), weights.astype(np.float32))


from lookalike.features.aggregators import cam, crow, fc, gem, mac, pwa, rmac, scda, spoc  # noqa: E402,F401  (each registers itself)
