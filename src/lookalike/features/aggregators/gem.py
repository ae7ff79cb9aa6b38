"""GeM: generalised-mean pooling (Radenović et al.): p=1 is average pooling, p→∞ is max pooling."""
from __future__ import annotations

import numpy as np

from . import AGGREGATORS, PoolContext


@AGGREGATORS.register("gem")
def gem(fmap: np.ndarray, ctx: PoolContext | None = None, *, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    x = np.maximum(fmap, eps).astype(np.float64)
    return np.power(np.power(x, p).mean(axis=(2, 3)), 1.0 / p).astype(np.float32)
