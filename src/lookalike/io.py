"""Safe image loading: every failure becomes an ``ImageError`` naming the file and the reason."""
from __future__ import annotations

import io as _io
import os
import math
import re
import stat
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lookalike.errors import BadInputError, ImageError

__all__ = ["ImageError", "read_file", "load_image", "decode", "as_rgb", "is_image_name", "ImageInfo", "image_info",
           "file_type", "register_plugins"]

Source = Union[str, os.PathLike, bytes]

MAX_PIXELS = 80_000_000  # larger images are refused as decompression bombs
MAX_FILE_BYTES = 200 * 1024 * 1024
# camera RAW files, read through rawpy (LibRaw) when the ``formats`` extra is installed
RAW_SUFFIXES = {".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
                ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".rwl", ".erf", ".kdc", ".mos", ".mrw"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif",
                  ".heic", ".heif", ".hif", ".avif"} | RAW_SUFFIXES
FORMATS_HINT = "install lookalike's 'formats' extra: pip install 'lookalike[formats]'"

ImageFile.LOAD_TRUNCATED_IMAGES = False

_plugins_lock = threading.Lock()
_plugins_ready = False


def register_plugins() -> None:
    """Teach PIL HEIC/HEIF (pillow-heif) and, where Pillow lacks it, AVIF (pillow-avif-plugin):
    once, on the first decode, and only what is installed (both are optional)."""
    global _plugins_ready
    if _plugins_ready:
        return
    with _plugins_lock:
        if _plugins_ready:
            return
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
        except ImportError:
            pass
        from PIL import features

        if not features.check("avif"):
            try:
                import pillow_avif  # noqa: F401 - registers the AVIF plugin on import
            except ImportError:
                pass
        _plugins_ready = True

def _name(source: Source) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file: the one place files are opened, so that every caller refuses
    the same things (missing, not a regular file, empty, too large, unreadable) with one reason."""
    name = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(name, "file not found") from None
    except OSError as e:
        raise ImageError(name, f"cannot stat file ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(name, "not a regular file")
    if st.st_size == 0:
        raise ImageError(name, "empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(name, f"file too large ({st.st_size} bytes)")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageError(name, f"cannot read file ({e.strerror or e})") from None


def load_image(source: Source, max_side: int | None = None, max_pixels: int = MAX_PIXELS,
               reduce_to: int | None = None) -> np.ndarray:
    """Decode ``source`` (a path or encoded bytes) to an (H, W, 3) uint8 RGB array.

    EXIF orientation is applied; palette, grayscale, CMYK, 16-bit and alpha images are converted;
    an animated image gives its first frame; HEIC, AVIF and camera RAW files are read when their
    libraries are installed. ``max_side`` downsizes (never upsizes) while decoding. ``reduce_to``
    is for a caller that resizes to that long side itself: the image comes as small as is cheap
    while keeping its long side at least ``reduce_to`` (JPEGs decoded at 1/2, 1/4 or 1/8 scale,
    other images over twice as large shrunk to it), so no full-size copy of a photo is kept.
    """
    name = _name(source)
    if not isinstance(source, (bytes, bytearray)):
        data = read_file(source)
    else:
        data = bytes(source)
        if not data:
            raise ImageError(name, "empty data (0 bytes)")
    return decode(data, name, max_side=max_side, max_pixels=max_pixels, reduce_to=reduce_to)


def decode(data: bytes, name: str = "<bytes>", max_side: int | None = None,
           max_pixels: int = MAX_PIXELS, reduce_to: int | None = None) -> np.ndarray:
    """Decode encoded image bytes; see ``load_image``."""
    register_plugins()
    if Path(name).suffix.lower() in RAW_SUFFIXES:
        return _finish(decode_raw(data, name, reduce_to or max_side, max_pixels), name, max_side, reduce_to)
    try:
        with warnings.catch_warnings():
            # PIL warns from 89 MP on; the limit here is ours: decoded pixels, not declared ones
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(_io.BytesIO(data))
            w, h = im.size
            if im.format == "JPEG":
                # JPEGs decode at 1/2, 1/4 or 1/8 size for free: a large camera photo is decoded
                # small enough rather than refused, so decoding memory stays under the limit
                if reduce_to and max(w, h) >= 2 * reduce_to:
                    im.draft("RGB", draft_size(w, h, reduce_to))  # the smallest scale still >= reduce_to
                elif max_side and max(w, h) > 2 * max_side:
                    im.draft("RGB", (max_side, max_side))  # fast downscale; the exact resize follows
                s = next((s for s in (1, 2, 4, 8) if (w // s) * (h // s) <= max_pixels), None)
                if s is None:
                    raise ImageError(name, f"image too large ({w}x{h} pixels, more than {max_pixels} even "
                                     "when decoded at 1/8 size): possible decompression bomb")
                if im.size[0] * im.size[1] > max_pixels:
                    im.draft("RGB", (-(-w // s), -(-h // s)))
            elif w * h > max_pixels:
                raise ImageError(name, f"image too large ({w}x{h} pixels; limit {max_pixels}): "
                                 "possible decompression bomb")
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(name, f"possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        im = _raw_or_none(data, name, reduce_to or max_side, max_pixels)
        if im is None:
            raise ImageError(name, _unrecognised(name)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(name, f"corrupt or truncated image ({e})") from None
    except MemoryError:
        raise ImageError(name, "out of memory while decoding") from None
    return _finish(im, name, max_side, reduce_to)


def _raw_or_none(data: bytes, name: str, side: int | None, max_pixels: int) -> Image.Image | None:
    """Bytes PIL does not know, read as a camera RAW file when they are one (no file name to go by)."""
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return None
    try:
        return decode_raw(data, name, side, max_pixels)
    except ImageError:
        return None


# LibRaw's flip code -> the PIL transpose that turns the sensor image upright
_RAW_FLIPS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def decode_raw(data: bytes, name: str, side: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A camera RAW file through rawpy: its embedded preview when there is one at least ``side``
    pixels long (1024 when no side is asked for) or as large as the sensor data at half size,
    otherwise the sensor data demosaiced at half size; turned upright by the camera's orientation."""
    try:
        import rawpy
    except ImportError:
        raise ImageError(name, f"camera RAW files need rawpy: {FORMATS_HINT}") from None
    try:
        with rawpy.imread(_io.BytesIO(data)) as raw:
            sz = raw.sizes
            if sz.raw_width * sz.raw_height > 4 * max_pixels:  # half-size demosaicing quarters it
                raise ImageError(name, f"image too large ({sz.raw_width}x{sz.raw_height} pixels): "
                                 "possible decompression bomb")
            need = min(side or 1024, max(sz.width, sz.height) // 2)
            im = _raw_preview(raw, need, max_pixels)
            if im is None:
                return Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
            if sz.flip in _RAW_FLIPS:
                im = im.transpose(_RAW_FLIPS[sz.flip])
            return im
    except ImageError:
        raise
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise ImageError(name, f"corrupt or unsupported RAW file ({type(e).__name__}: {e})") from None
    except MemoryError:
        raise ImageError(name, "out of memory while decoding") from None


def _raw_preview(raw: object, side: int, max_pixels: int) -> Image.Image | None:
    """The embedded preview as an RGB image in the sensor's orientation, or None (none, too small)."""
    import rawpy

    try:
        thumb = raw.extract_thumb()  # type: ignore[attr-defined]
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        im = Image.open(_io.BytesIO(thumb.data))
        if max(im.size) < side or im.size[0] * im.size[1] > max_pixels:
            return None
        if max(im.size) >= 2 * side:
            im.draft("RGB", draft_size(*im.size, side))
        im.load()
        return _to_rgb(im)
    arr = np.asarray(thumb.data)
    if arr.ndim != 3 or max(arr.shape[:2]) < side:
        return None
    return _to_rgb(Image.fromarray(arr.astype(np.uint8)))


def draft_size(w: int, h: int, side: int) -> tuple[int, int]:
    """The size to ask PIL's JPEG ``draft`` for so the result keeps its long side >= ``side``:
    draft picks the largest scale that keeps *both* sides at least the size asked for."""
    r = side / max(w, h)
    return max(1, math.ceil(w * r)), max(1, math.ceil(h * r))


def _unrecognised(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".heic", ".heif", ".hif", ".avif"):
        try:
            if suffix == ".avif":
                from PIL import features

                if not features.check("avif"):
                    import pillow_avif  # noqa: F401
            else:
                import pillow_heif  # noqa: F401
        except ImportError:
            return f"{suffix[1:].upper()} images need a decoder: {FORMATS_HINT}"
    return "not a recognised image format"


def _finish(im: Image.Image | np.ndarray, name: str, max_side: int | None, reduce_to: int | None) -> np.ndarray:
    """Shrink a decoded image as asked and check it is (H, W, 3) uint8."""
    if isinstance(im, np.ndarray):
        im = Image.fromarray(im)
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.BICUBIC)
    elif reduce_to and max(im.size) > 2 * reduce_to:
        im.thumbnail((reduce_to, reduce_to), Image.BICUBIC)
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


def as_rgb(image: object) -> np.ndarray:
    """A query image in any usual form as (H, W, 3) uint8 RGB: a path, encoded bytes (``bytes``,
    ``bytearray``, ``memoryview``), a binary file object, a PIL image, or an array (grey (H, W),
    RGB, RGBA; uint8, or floats in [0, 1] or [0, 255]). Anything else is a ``BadInputError``."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return load_image(bytes(image))
    if isinstance(image, Image.Image):
        return np.asarray(_to_rgb(ImageOps.exif_transpose(image) or image))
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, (bytes, bytearray)):
            raise BadInputError("a file object given as an image must be opened in binary mode ('rb')")
        return load_image(bytes(data))
    if isinstance(image, np.ndarray):
        return _array_rgb(image)
    raise BadInputError(f"cannot use a {type(image).__name__} as an image: give a path, bytes, a binary "
                        "file object, a PIL image or a numpy array")


def _array_rgb(a: np.ndarray) -> np.ndarray:
    if a.size == 0 or a.ndim not in (2, 3) or min(a.shape[:2]) < 1:
        raise BadInputError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4) and not empty (got {a.shape})")
    if a.ndim == 3 and a.shape[2] not in (1, 3, 4):
        raise BadInputError(f"an image array needs 1, 3 or 4 channels (got {a.shape[2]})")
    if a.dtype != np.uint8:
        if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
            raise BadInputError(f"an image array must be numeric (got {a.dtype})")
        x = a.astype(np.float64)
        if not np.isfinite(x).all():
            raise BadInputError("an image array must not hold NaN or infinite values")
        if np.issubdtype(a.dtype, np.floating) and x.max() <= 1.0:
            x = x * 255.0
        a = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:  # composite on white, as for files with alpha
        rgb, alpha = a[:, :, :3].astype(np.float32), a[:, :, 3:].astype(np.float32) / 255.0
        a = np.rint(rgb * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a)


# -- metadata from the header (no pixels decoded) ---------------------------------------------------
TYPE_OF_FORMAT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff",
                  "WEBP": "webp", "PPM": "ppm", "HEIF": "heic", "AVIF": "avif"}
TYPE_ALIASES = {"jpeg": "jpg", "jfif": "jpg", "jpe": "jpg", "tif": "tiff", "pgm": "ppm", "pbm": "ppm", "heif": "heic"}
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass
class ImageInfo:
    """What an image's header says: pixel size as displayed (EXIF rotation applied), its type,
    when it was taken (EXIF ``DateTimeOriginal``, ISO ``YYYY-MM-DDTHH:MM:SS``) and the camera."""

    width: int | None = None
    height: int | None = None
    type: str | None = None
    taken: str | None = None
    camera: str | None = None


def file_type(name: str) -> str:
    """A file type as a lower-case extension without the dot, one spelling per type (jpg, tiff)."""
    ext = name.lower().rsplit(".", 1)[-1].strip() if "." in name else name.lower().strip()
    return TYPE_ALIASES.get(ext, ext)


def image_info(data: "bytes | BinaryIO", name: str = "<bytes>") -> ImageInfo:
    """Size, type, date taken and camera from the header and EXIF of encoded bytes or a binary
    file object; cheap (PIL reads the header only, and from a file only the bytes it needs).
    Whatever cannot be read is None; it never raises."""
    info = ImageInfo(type=file_type(name) if "." in os.path.basename(name) else None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(_io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data)
            info.width, info.height = im.size
            info.type = TYPE_OF_FORMAT.get(im.format or "", info.type)
            exif = im.getexif()
    except Exception:  # noqa: BLE001 - a header we cannot read gives no metadata, not an error
        return info
    try:
        if exif.get(0x0112) in _ROTATED:
            info.width, info.height = info.height, info.width
        sub = exif.get_ifd(0x8769)
        info.taken = exif_date(sub.get(0x9003)) or exif_date(sub.get(0x9004))
        info.camera = camera_name(exif.get(0x010F), exif.get(0x0110))
    except Exception:  # noqa: BLE001 - malformed EXIF: keep what the header gave
        pass
    return info


def exif_date(value: object) -> str | None:
    """``2021:07:04 18:30:00`` -> ``2021-07-04T18:30:00``; None for empty or impossible dates."""
    if not isinstance(value, str):
        return None
    m = re.match(r"\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})", value)
    if not m:
        return None
    try:
        return datetime(*(int(g) for g in m.groups())).isoformat()
    except ValueError:
        return None


def camera_name(make: object, model: object) -> str | None:
    """"Make Model", without the make twice (Canon writes "Canon" and "Canon EOS 5D")."""
    make = make.strip(" \x00") if isinstance(make, str) else ""
    model = model.strip(" \x00") if isinstance(model, str) else ""
    if make and model.lower().startswith(make.split()[0].lower()):
        return model
    return " ".join(p for p in (make, model) if p) or None
