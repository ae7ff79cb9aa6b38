"""MAC: maximum activation of each channel over all positions (Tolias et al. 2016)."""
from __future__ import annotations

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext


@AGGREGATORS.register("mac")
def mac(fmap: np.ndarray, ctx: PoolContext | None = None) -> np.ndarray:
    return fmap.max(axis=(2, 3)).astype(np.float32)
