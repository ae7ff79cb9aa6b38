"""Files the server writes: uploads named by content hash, cached thumbnails and match drawings."""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from lookalike.io import decode, load_image

THUMB_SIDE = 256
# PIL format -> file suffix the indexer accepts; other formats are stored re-encoded as PNG
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
            "PPM": ".ppm"}


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_image(data: bytes, name: str) -> str | None:
    """Validate uploaded bytes as an image (``ImageError`` if not); return its PIL format name."""
    decode(data, name, max_side=64)  # cheap: refuses bombs before decoding, JPEGs decode in draft mode
    try:
        return Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - decode() succeeded, so the format is merely unknown here
        return None


def save_upload(folder: Path, data: bytes, name: str) -> Path:
    """Store an upload as ``folder/<sha1><suffix>`` (idempotent); ``ImageError`` for non-images."""
    fmt = check_image(data, name)
    suffix = SUFFIXES.get(fmt or "")
    if suffix is None:  # keep only formats the indexer reads back
        buf = io.BytesIO()
        Image.fromarray(decode(data, name)).save(buf, "PNG")
        data, suffix = buf.getvalue(), ".png"
    path = folder / f"{hashlib.sha1(data).hexdigest()}{suffix}"
    if not path.exists():
        atomic_write(path, data)
    return path


def thumbnail(cache: Path, image_id: int, digest: str | None, source: str) -> Path:
    """The cached JPEG thumbnail of an indexed file (rebuilt when the file's hash changes)."""
    path = cache / f"{image_id}-{(digest or 'nohash')[:16]}.jpg"
    if path.exists():
        return path
    rgb = load_image(source, max_side=THUMB_SIDE)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=85)
    atomic_write(path, buf.getvalue())
    return path


__all__ = ["THUMB_SIDE", "atomic_write", "check_image", "save_upload", "thumbnail"]
