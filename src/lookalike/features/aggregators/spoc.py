"""SPoC: sum pooling (Babenko & Lempitsky 2015), optionally weighted by a Gaussian centre prior."""
from __future__ import annotations

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext, weighted_sum


def centre_prior(h: int, w: int) -> np.ndarray:
    """Gaussian weights (h, w) centred on the map, sigma = 1/3 of the centre-to-nearest-border distance."""
    ys, xs = np.arange(h) - (h - 1) / 2.0, np.arange(w) - (w - 1) / 2.0
    sigma = max(min(h, w) / 2.0 / 3.0, 1e-6)
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))


@AGGREGATORS.register("spoc")
def spoc(fmap: np.ndarray, ctx: PoolContext | None = None, *, prior: bool = False) -> np.ndarray:
    b, _, h, w = fmap.shape
    if not prior:
        return fmap.sum(axis=(2, 3), dtype=np.float64).astype(np.float32)
    return weighted_sum(fmap, np.broadcast_to(centre_prior(h, w), (b, h, w)))
