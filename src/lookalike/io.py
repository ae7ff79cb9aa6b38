"""Safe image loading: every failure becomes an ``ImageError`` naming the file and the reason."""
from __future__ import annotations

import io as _io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

Source = Union[str, os.PathLike, bytes]

MAX_PIXELS = 80_000_000  # larger images are refused as decompression bombs
MAX_FILE_BYTES = 200 * 1024 * 1024
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(Exception):
    """An image that cannot be used; ``str()`` is a one-line message naming the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _name(source: Source) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def load_image(source: Source, max_side: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` (a path or encoded bytes) to an (H, W, 3) uint8 RGB array.

    EXIF orientation is applied; palette, grayscale, CMYK, 16-bit and alpha images are converted;
    an animated image gives its first frame. ``max_side`` downsizes (never upsizes) while decoding.
    """
    name = _name(source)
    if not isinstance(source, (bytes, bytearray)):
        path = Path(source)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ImageError(name, "file not found") from None
        except OSError as e:
            raise ImageError(name, f"cannot stat file ({e.strerror or e})") from None
        if not path.is_file():
            raise ImageError(name, "not a regular file")
        if st.st_size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageError(name, f"file too large ({st.st_size} bytes)")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ImageError(name, f"cannot read file ({e.strerror or e})") from None
    else:
        data = bytes(source)
        if not data:
            raise ImageError(name, "empty data (0 bytes)")
    return decode(data, name, max_side=max_side, max_pixels=max_pixels)


def decode(data: bytes, name: str = "<bytes>", max_side: int | None = None,
           max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes; see ``load_image``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(_io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(name, f"image too large ({w}x{h} pixels; limit {max_pixels}): possible decompression bomb")
            if max_side and max(w, h) > 2 * max_side and im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))  # fast JPEG downscale while decoding
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(name, f"possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(name, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(name, f"corrupt or truncated image ({e})") from None
    except MemoryError:
        raise ImageError(name, "out of memory while decoding") from None
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageError(name, f"unexpected decoded shape {arr.shape}")
    return arr


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = a.max() or 1.0
        im = Image.fromarray((a * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
