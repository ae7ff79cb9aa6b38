"""Generated photos with known copies, and another shot of the same scene, for the duplicates tests."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps


def scene(seed: int, shift: tuple[int, int] = (0, 0), size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A textured RGB picture: smooth noise in colour plus many shapes. ``shift`` moves the shapes
    (not the background) by different amounts, as a second shot of the same scene would."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3), np.float32)
    for octave in (4, 8, 16, 32):
        small = rng.uniform(0, 255, (octave * h // w + 1, octave + 1, 3)).astype(np.float32)
        img += np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                          np.float32) / 4
    yy, xx = np.mgrid[0:h, 0:w]
    move = np.random.default_rng(seed + 1000)
    for k in range(60):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 18)
        if shift != (0, 0):
            cx += shift[0] * move.uniform(0.3, 1.7)
            cy += shift[1] * move.uniform(0.3, 1.7)
        col = rng.uniform(0, 255, 3)
        if k % 2:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        else:
            mask = (abs(xx - cx) < r) & (abs(yy - cy) < r * 0.6)
        img[mask] = col
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(im: Image.Image, q: int) -> Image.Image:
    b = io.BytesIO()
    im.save(b, "JPEG", quality=q)
    return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


COPIES = {  # name -> (how it is made, expected kind of match)
    "resized.jpg": (lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), ("near", "edited")),
    "cropped.jpg": (lambda im: im.crop((40, 30, 290, 220)), ("edited",)),
    "mirrored.jpg": (ImageOps.mirror, ("near", "edited")),
    "turned.jpg": (lambda im: im.transpose(Image.Transpose.ROTATE_90), ("near", "edited")),
    "recoloured.jpg": (lambda im: ImageEnhance.Color(Image.fromarray(np.asarray(im)[..., [2, 0, 1]])).enhance(1.3),
                       ("near", "edited")),
    "recompressed.jpg": (lambda im: jpeg(im, 25), ("near", "edited")),
}


def make_collection(root: Path, with_exact: bool = True) -> Path:
    """root/photos: original.png and its copies, another shot of the scene, and two unrelated
    pictures; an exact copy (same bytes) and a same-pixels copy in root/photos/more/."""
    d = root / "photos"
    (d / "more").mkdir(parents=True, exist_ok=True)
    original = Image.fromarray(scene(1))
    original.save(d / "original.png")
    for name, (fn, _) in COPIES.items():
        fn(original).save(d / name, quality=92)
    Image.fromarray(scene(1, shift=(9, 6))).save(d / "other_shot.png")  # similar, not a copy
    Image.fromarray(scene(2)).save(d / "unrelated_a.png")
    Image.fromarray(scene(3)).save(d / "unrelated_b.jpg", quality=90)
    if with_exact:
        shutil.copy(d / "unrelated_a.png", d / "more" / "unrelated_a copy.png")
        Image.open(d / "unrelated_a.png").save(d / "more" / "unrelated_a.bmp")  # the same pixels, other bytes
    return d
