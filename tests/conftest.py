"""Shared fixtures: small synthetic photos made on the fly (no external data needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def synthetic_photo(seed: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """A distinctive RGB image: a colour gradient background with random coloured shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 255, 3)
    tilt = rng.uniform(-1.5, 1.5, (2, 3))
    img = base + xx[..., None] * tilt[0] + yy[..., None] * tilt[1]
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 30)
        col = rng.uniform(0, 255, 3)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[mask] = col
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of 8 synthetic photos, one in a subfolder."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for i in range(8):
        target = d / "sub" if i == 7 else d
        Image.fromarray(synthetic_photo(i)).save(target / f"img{i}.jpg", quality=92)
    return d
