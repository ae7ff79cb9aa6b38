"""The classic colour vector: HSV histograms of five image regions (four corners and a centre
ellipse), as in the well-known image-search demos, compared by Pearson, Bhattacharyya, chi-square or
cosine similarity.

Each comparison is turned into an inner product by how the vector is prepared (``prepare_vectors``):
Pearson = inner product of centred, L2-normalised histograms; Bhattacharyya coefficient = inner
product of square-rooted, L1-normalised ones; cosine = inner product of L2-normalised ones. Chi-square
is not an inner product, so ``chi2_similarity`` scores it exactly by brute force.

Pearson and cosine compare power-normalised histograms (each bin raised to ``power``, 0.25 by
default): without it a few large bins (sky, walls) dominate the correlation. On holidays300 this
raised Pearson's mAP from 0.48 (``power=1``) to 0.68.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from lookalike.errors import BadInputError

from lookalike.features.base import Extractor

COMPARES = ("pearson", "bhattacharyya", "chi2", "cosine")


class ColorExtractor(Extractor):
    """Region HSV histogram; ``describe`` returns L1-normalised raw histograms."""

    name = "color"

    def __init__(self, bins: Sequence[int] = (8, 12, 3), regions: bool = True, max_side: int = 400,
                 compare: str = "pearson", power: float = 0.25) -> None:
        if compare not in COMPARES:
            raise BadInputError(f"compare must be one of {', '.join(COMPARES)}, not {compare!r}")
        self.bins, self.regions, self.max_side, self.compare = tuple(bins), regions, max_side, compare
        self.power = power
        self.dim = int(np.prod(self.bins)) * (5 if regions else 1)
        self.metric = "chi2" if compare == "chi2" else "ip"

    def _masks(self, h: int, w: int) -> list[np.ndarray | None]:
        if not self.regions:
            return [None]
        cx, cy = w // 2, h // 2
        ellipse = np.zeros((h, w), np.uint8)
        cv2.ellipse(ellipse, (cx, cy), (int(w * 0.75) // 2, int(h * 0.75) // 2), 0, 0, 360, 255, -1)
        masks = []
        for x0, x1, y0, y1 in ((0, cx, 0, cy), (cx, w, 0, cy), (cx, w, cy, h), (0, cx, cy, h)):
            m = np.zeros((h, w), np.uint8)
            m[y0:y1, x0:x1] = 255
            masks.append(cv2.subtract(m, ellipse))
        return masks + [ellipse]

    def describe_one(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        if max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            h, w = rgb.shape[:2]
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
        parts = []
        for mask in self._masks(h, w):
            hist = cv2.calcHist([hsv], [0, 1, 2], mask, list(self.bins), [0, 180, 0, 256, 0, 256])
            parts.append(hist.ravel())
        v = np.concatenate(parts).astype(np.float32)
        return v / max(float(v.sum()), 1e-12)

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.describe_one(im) for im in images])

    def prepare_vectors(self, hists: np.ndarray) -> np.ndarray:
        """Raw histograms -> vectors whose inner product is the chosen similarity."""
        x = np.asarray(hists, np.float64)
        if self.compare in ("pearson", "cosine"):
            x = np.power(np.maximum(x, 0), self.power)
        if self.compare == "pearson":
            x = x - x.mean(axis=1, keepdims=True)
            x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        elif self.compare == "bhattacharyya":
            x = np.sqrt(np.maximum(x, 0) / (x.sum(axis=1, keepdims=True) + 1e-12))
        elif self.compare == "cosine":
            x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        return x.astype(np.float32)

    @staticmethod
    def chi2_similarity(queries: np.ndarray, db: np.ndarray, eps: float = 1e-10) -> np.ndarray:
        """Negated chi-square distance 0.5·Σ (q−d)²/(q+d) between every query and db row."""
        out = np.empty((len(queries), len(db)), np.float32)
        for i, q in enumerate(queries):
            num = (db - q) ** 2
            out[i] = -0.5 * (num / (db + q + eps)).sum(axis=1)
        return out

    def config(self) -> dict[str, Any]:
        return {"extractor": "color", "bins": list(self.bins), "regions": self.regions,
                "max_side": self.max_side}
