"""FC baseline: the classifier layer output (ImageNet logits), or the pooled vector that feeds it.

``source="logits"`` (default) returns ``ctx.logits`` (1000-D), the classic "fc-layer" descriptor;
``source="pool"`` returns the average-pooled last conv map (C-D), the penultimate vector.
"""
from __future__ import annotations

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext


@AGGREGATORS.register("fc")
def fc(fmap: np.ndarray, ctx: PoolContext | None = None, *, source: str = "logits") -> np.ndarray:
    if source == "pool":
        return fmap.mean(axis=(2, 3)).astype(np.float32)
    if source != "logits":
        raise ValueError(f"fc source must be 'logits' or 'pool', not {source!r}")
    if ctx is None or ctx.logits is None:
        raise ValueError("fc with source='logits' needs ctx.logits")
    return np.asarray(ctx.logits, np.float32).reshape(len(fmap), -1)
