"""Thumbnails kept with the index, so that a gallery never decodes an original to show it.

The writer makes one when it has just decoded an image to describe it (``runners.process_batch``)
and stores it under ``thumbs/`` in the index folder, named by the image's content hash: files with
the same content share one thumbnail, a thumbnail never goes stale (new content, new name), and a
write is a file put in place before the catalog row that names it, so a crash leaves at worst an
unreferenced file. The writer deletes a thumbnail once no indexed image has its hash. Searches
only read them.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

THUMB_SIDE = 256  # long side, in pixels (never upscaled)
THUMB_QUALITY = 80  # JPEG: about 10 KB a thumbnail, 5 ms to make from an image decoded for describing
THUMB_TYPE = "image/jpeg"


def make_thumbnail(rgb: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """The JPEG thumbnail of an (H, W, 3) uint8 RGB image, long side at most ``side``."""
    im = Image.fromarray(rgb)
    if max(im.size) > side:
        im.thumbnail((side, side), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=THUMB_QUALITY, optimize=False)
    return buf.getvalue()


class ThumbStore:
    """The ``thumbs/`` folder of an index: ``thumbs/ab/abcdef...jpg`` for content hash ``abcdef...``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, digest: str) -> Path:
        if not digest or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a content hash: {digest!r}")  # a bug in the caller: hashes are hex
        return self.folder / digest[:2] / f"{digest}.jpg"

    def has(self, digest: str | None) -> bool:
        return bool(digest) and self.path(digest).is_file()

    def read(self, digest: str | None) -> bytes | None:
        if not digest:
            return None
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, digest: str, data: bytes) -> None:
        """Store a thumbnail (written to a temporary name, then renamed: never seen half-written)."""
        path = self.path(digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def drop(self, digests: Iterable[str]) -> int:
        n = 0
        for d in set(digests):
            try:
                self.path(d).unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def digests(self) -> set[str]:
        """The hashes of every stored thumbnail."""
        if not self.folder.is_dir():
            return set()
        return {p.stem for p in self.folder.glob("??/*.jpg")}
