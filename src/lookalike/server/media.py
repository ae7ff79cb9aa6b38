"""Files the server reads and writes: uploads kept under their own (safe, unique) names, originals
read back only while they are still the indexed file, and a memory cache bounded in bytes (match
drawings, thumbnails the index lacks)."""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tempfile
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lookalike.io import MAX_FILE_BYTES, decode

# PIL format -> file suffix the indexer accepts; other formats are stored re-encoded as PNG
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
            "PPM": ".ppm"}
ALIASES = {"JPEG": {".jpg", ".jpeg", ".jfif"}, "TIFF": {".tif", ".tiff"}, "PPM": {".ppm", ".pgm"}}
MAX_STEM = 100  # characters of an upload's name kept (before the suffix)


class NotIndexedFile(Exception):
    """The file at an indexed path is not (or no longer) the indexed image; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


# -- uploads -------------------------------------------------------------------------------------
@dataclass
class Upload:
    """An upload checked to be an image, ready to store: the bytes the index will read (``data``,
    re-encoded as PNG for formats the indexer does not read) and the file name to store it under."""

    data: bytes
    name: str
    client_name: str
    hashes: tuple[str, ...]  # SHA-1 of the stored bytes, then of the uploaded ones when they differ


def check_image(data: bytes, name: str) -> str | None:
    """Validate uploaded bytes as an image (``ImageError`` if not); return its PIL format name."""
    decode(data, name, max_side=64)  # cheap: refuses bombs before decoding, JPEGs decode in draft mode
    try:
        return Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - decode() succeeded, so the format is merely unknown here
        return None


def safe_stem(client_name: str) -> str:
    """The stem of an uploaded file's name, safe as a file name: no folders, no leading dots,
    letters, digits, ``.``, ``-`` and ``_`` only (anything else becomes ``_``), at most 100 characters."""
    base = re.split(r"[/\\]", client_name or "")[-1]
    base = unicodedata.normalize("NFC", base)
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = re.sub(r"[^\w.-]", "_", stem).strip("._ ")
    stem = re.sub(r"_{2,}", "_", stem)[:MAX_STEM].rstrip("._ ")
    return stem or "upload"


def prepare_upload(data: bytes, client_name: str) -> Upload:
    """Check an upload (``ImageError`` for non-images) and choose its stored bytes and name: the
    client's name made safe, with a suffix that matches the content (its own one when it does)."""
    fmt = check_image(data, client_name)
    hashes = [hashlib.sha1(data).hexdigest()]
    suffix = SUFFIXES.get(fmt or "")
    if suffix is None:  # keep only formats the indexer reads back
        buf = io.BytesIO()
        Image.fromarray(decode(data, client_name)).save(buf, "PNG")
        data, suffix = buf.getvalue(), ".png"
        hashes.insert(0, hashlib.sha1(data).hexdigest())
    own = Path(re.split(r"[/\\]", client_name or "")[-1]).suffix.lower()
    if fmt and own in ALIASES.get(fmt, ()):
        suffix = own
    return Upload(data, safe_stem(client_name) + suffix, client_name, tuple(hashes))


def store_upload(folder: Path, upload: Upload) -> Path:
    """Write an upload to ``folder`` under its name, or ``NAME-2``, ``NAME-3``... when taken
    (never replacing a file: the name is claimed with a hard link, which fails if it exists)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(upload.data)
        stem, suffix = os.path.splitext(upload.name)
        for n in range(1, 10_000):
            path = folder / (upload.name if n == 1 else f"{stem}-{n}{suffix}")
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: claim the name by creating it
                try:
                    with open(path, "xb") as out:
                        out.write(upload.data)
                    return path
                except FileExistsError:
                    continue
        raise FileExistsError(f"no free name for {upload.name} in the uploads folder")
    finally:
        os.unlink(tmp)


# -- reading indexed files back ------------------------------------------------------------------
def read_indexed(path: str, size: int | None, mtime: float | None, digest: str | None) -> bytes:
    """The bytes at an indexed path, only while they are still the indexed image: a regular file
    (after any symlink) with the catalog's size and content hash (SHA-1), or, for a row without a
    hash, a regular file that is no symlink with the catalog's size and modification time.
    ``NotIndexedFile`` otherwise. What is returned is what was checked (read once)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)  # a FIFO must not block
    except FileNotFoundError:
        raise NotIndexedFile("the file is no longer there") from None
    except OSError as e:
        raise NotIndexedFile(f"the file cannot be opened ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotIndexedFile("the path is no longer a regular file")
        if size is None or st.st_size != size or st.st_size > MAX_FILE_BYTES:
            raise NotIndexedFile("the file changed since it was indexed (size)")
        if not digest:
            if os.path.islink(path) or mtime is None or st.st_mtime != mtime:
                raise NotIndexedFile("the file changed since it was indexed")
        data = f.read(size + 1)
    if len(data) != size or (digest and hashlib.sha1(data).hexdigest() != digest):
        raise NotIndexedFile("the file changed since it was indexed (content)")
    return data


class ByteCache:
    """A least-recently-used cache of byte strings, bounded by their total size (in memory: the
    match drawings, so that reading requests never grow the index folder)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[object, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: object, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self.bytes -= len(old) if old is not None else 0
            self._items[key] = value
            self.bytes += len(value)
            while self.bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["ByteCache", "NotIndexedFile", "Upload", "atomic_write", "check_image",
           "prepare_upload", "read_indexed", "safe_stem", "store_upload"]
