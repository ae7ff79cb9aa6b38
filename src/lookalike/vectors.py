"""Small operations on descriptor matrices shared by every layer."""
from __future__ import annotations

import numpy as np


def l2n(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x)
    return (x / (np.linalg.norm(x, axis=axis, keepdims=True) + eps)).astype(np.float32)
