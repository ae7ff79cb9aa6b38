"""Two extractors as one: their L2-normalised descriptors concatenated, weighted."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lookalike.features.base import Extractor
from lookalike.vectors import l2n


class Fusion(Extractor):
    """Concatenation of two extractors' L2-normalised descriptors, weighted; the result has unit norm,
    so its inner product is w1²·sim1 + w2²·sim2 (over w1² + w2²)."""

    metric = "ip"

    def __init__(self, first: Any, second: Any, weights: tuple[float, float] = (1.0, 1.0)) -> None:
        if getattr(first, "metric", "ip") != "ip" or getattr(second, "metric", "ip") != "ip":
            raise ValueError("Fusion needs two inner-product extractors")
        self.first, self.second, self.weights = first, second, (float(weights[0]), float(weights[1]))
        self.name = f"fusion-{first.name}-{second.name}"
        self.dim = int(first.dim) + int(second.dim)
        self.gives_logits = self._together()

    @property
    def max_side(self) -> int | None:
        sides = [getattr(e, "max_side", None) for e in (self.first, self.second)]
        return max((s for s in sides if s), default=None)

    @property
    def decode_side(self) -> int | None:
        sides = [getattr(e, "decode_side", None) for e in (self.first, self.second)]
        return None if None in sides else max(sides)

    def combine(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Fuse two descriptor matrices already computed by the two extractors."""
        w1, w2 = self.weights
        norm = float(np.sqrt(w1 * w1 + w2 * w2)) or 1.0
        return np.hstack([l2n(a) * (w1 / norm), l2n(b) * (w2 / norm)]).astype(np.float32)

    def _together(self) -> bool:
        """True when both parts come from the same backbone passes (pooled twice, run once)."""
        return hasattr(self.first, "describe_together") and self.first.shares_pass(self.second)

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if self._together():
            both, _ = self.first.describe_together(images, [self.second])
            return self.combine(both[:, :self.first.dim], both[:, self.first.dim:])
        return self.combine(self.first.describe(images), self.second.describe(images))

    def describe_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Descriptors and the first part's ImageNet logits (N, 1000), for text search, when both
        parts share the backbone passes."""
        if not self._together():
            return self.describe(images), None
        both, logits = self.first.describe_together(images, [self.second])
        return self.combine(both[:, :self.first.dim], both[:, self.first.dim:]), logits

    def config(self) -> dict[str, Any]:
        return {"extractor": "fusion", "weights": list(self.weights),
                "first": self.first.config(), "second": self.second.config()}
