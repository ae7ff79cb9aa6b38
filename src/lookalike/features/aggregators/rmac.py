"""R-MAC: regional MAC (Tolias, Sicre & Jégou 2016).

Square regions at ``levels`` scales (side 2·min(H, W)/(l+1) at level l, ~40% overlap, the number
along the long side chosen as in the paper), each max-pooled, L2-normalised and summed.
"""
from __future__ import annotations

import math

import numpy as np

from lookalike.features.aggregators import AGGREGATORS, PoolContext
from lookalike.vectors import l2n


def rmac_regions(h: int, w: int, levels: int = 3, overlap: float = 0.4) -> list[tuple[int, int, int, int]]:
    """Regions (y, x, height, width) of the standard R-MAC grid on an h×w map."""
    side = min(h, w)
    steps = np.arange(2, 8)
    b = (max(h, w) - side) / (steps - 1)
    idx = int(np.argmin(np.abs((side**2 - side * b) / side**2 - overlap)))
    wd = idx + 1 if h < w else 0
    hd = idx + 1 if h > w else 0
    out: list[tuple[int, int, int, int]] = []
    for level in range(1, levels + 1):
        wl = math.floor(2 * side / (level + 1))
        if wl == 0:
            continue
        wl2 = math.floor(wl / 2 - 1)

        def starts(n_extra: int, extent: int) -> list[int]:
            n = level + n_extra
            step = 0.0 if n == 1 else (extent - wl) / (n - 1)
            return [int(math.floor(wl2 + i * step) - wl2) for i in range(n)]

        for y in starts(hd, h):
            for x in starts(wd, w):
                out.append((y, x, wl, wl))
    return out


@AGGREGATORS.register("rmac")
def rmac(fmap: np.ndarray, ctx: PoolContext | None = None, *, levels: int = 3) -> np.ndarray:
    b, c, h, w = fmap.shape
    total = np.zeros((b, c), np.float32)
    for y, x, rh, rw in rmac_regions(h, w, levels):
        total += l2n(fmap[:, :, y:y + rh, x:x + rw].max(axis=(2, 3)))
    return total
