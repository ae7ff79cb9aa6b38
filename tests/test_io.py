"""Safe image loading: every kind of bad input gives an ImageError naming the file and reason."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_photo
from lookalike.io import ImageError, load_image


def _bomb_png(path: Path, w: int = 30000, h: int = 30000) -> None:
    """A tiny PNG whose header declares w x h pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
                     + chunk(b"IEND", b""))


def test_good_jpeg(tmp_path):
    p = tmp_path / "a.jpg"
    Image.fromarray(synthetic_photo(1)).save(p)
    arr = load_image(p)
    assert arr.shape == (120, 160, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize("maker,reason", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("hello, I am not a picture"), "not a recognised image"),
    (lambda p: _bomb_png(p), "decompression bomb"),
])
def test_bad_files(tmp_path, maker, reason):
    p = tmp_path / "bad.jpg"
    maker(p)
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert reason in str(e.value) and str(p) in str(e.value)


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(synthetic_photo(2, (400, 300))).save(p, quality=95)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(p)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    p = tmp_path / "locked.jpg"
    Image.fromarray(synthetic_photo(3)).save(p)
    os.chmod(p, 0)
    try:
        if os.access(p, os.R_OK):  # root reads anything: simulate with a folder instead
            pytest.skip("running as root: file permissions do not stop reads")
        with pytest.raises(ImageError, match="cannot read"):
            load_image(p)
    finally:
        os.chmod(p, 0o644)


def test_symlink_loop(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(ImageError):
        load_image(a)


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "I;16", "RGBA", "LA", "1"])
def test_modes_convert_to_rgb(tmp_path, mode):
    im = Image.fromarray(synthetic_photo(4))
    if mode == "I;16":
        arr = (np.asarray(im.convert("L"), np.uint16) * 257)
        im = Image.fromarray(arr)  # 16-bit grayscale
    else:
        im = im.convert(mode)
    p = tmp_path / f"m.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    im.save(p)
    arr = load_image(p)
    assert arr.shape == (120, 160, 3) and arr.dtype == np.uint8 and arr.std() > 5


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((20, 30, 3), c, np.uint8)) for c in (10, 200)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    arr = load_image(p)
    assert arr.shape == (20, 30, 3) and arr.mean() < 50


def test_exif_rotation_applied(tmp_path):
    im = Image.fromarray(synthetic_photo(5, (160, 120)))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif)
    assert load_image(p).shape == (160, 120, 3)


def test_non_ascii_name(tmp_path):
    p = tmp_path / "猫 café.jpg"
    Image.fromarray(synthetic_photo(6)).save(p)
    assert load_image(p).shape == (120, 160, 3)


def test_bytes_and_max_side(tmp_path):
    p = tmp_path / "big.png"
    Image.fromarray(synthetic_photo(7, (800, 600))).save(p)
    arr = load_image(p.read_bytes(), max_side=200)
    assert max(arr.shape[:2]) == 200
