"""GeM: generalised-mean pooling (Radenović et al.): p=1 is average pooling, p→∞ is max pooling."""
from __future__ import annotations

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext


@AGGREGATORS.register("gem")
def gem(fmap: np.ndarray, ctx: PoolContext | None = None, *, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    x = np.maximum(fmap.astype(np.float32, copy=False), eps)
    if p == 3.0:  # the common case, without the float64 power (about 5x faster)
        return np.cbrt((x * x * x).mean(axis=(2, 3), dtype=np.float64)).astype(np.float32)
    return np.power(np.power(x.astype(np.float64), p).mean(axis=(2, 3)), 1.0 / p).astype(np.float32)
