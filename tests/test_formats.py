"""HEIC, AVIF and camera RAW files decode upright, index and search; large photos decode reduced."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.engine.runners import decode_side, read_one
from lookalike.io import ImageError, draft_size, is_image_name, load_image, register_plugins
from lookalike.pipelines import build
from lookalike.pipelines.spec import parse_spec

from conftest import synthetic_photo

RED, BLUE = (230, 20, 20), (20, 20, 230)


def two_halves(w: int = 64, h: int = 48) -> np.ndarray:
    """Red left half, blue right half: turned 90 degrees clockwise it is red on top."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2], a[:, w // 2:] = RED, BLUE
    return a


def upright(a: np.ndarray) -> np.ndarray:
    """What a viewer shows for EXIF orientation 6: the stored image turned 90 degrees clockwise."""
    return np.ascontiguousarray(np.rot90(a, -1))


def exif_rotated(orientation: int = 6) -> bytes:
    ex = Image.Exif()
    ex[274] = orientation
    return ex.tobytes()


def save_heic(path: Path, a: np.ndarray) -> Path:
    pytest.importorskip("pillow_heif")
    register_plugins()
    Image.fromarray(a).save(path, format="HEIF", exif=exif_rotated(), quality=90)
    return path


def save_avif(path: Path, a: np.ndarray) -> Path:
    if not has_avif():
        pytest.skip("no AVIF encoder (Pillow without AVIF and no pillow-avif-plugin)")
    Image.fromarray(a).save(path, format="AVIF", exif=exif_rotated(), quality=90)
    return path


def has_avif() -> bool:
    register_plugins()
    Image.init()
    return "AVIF" in Image.SAVE


def save_dng(path: Path, a: np.ndarray, preview: bool, orientation: int = 6) -> Path:
    """A minimal valid DNG: 12-bit RGGB sensor data mosaicked from ``a`` (2x2 cells), the camera
    orientation tag and, with ``preview``, ``a`` itself as the 8-bit preview in IFD0 (sensor data in
    a SubIFD, as cameras write them)."""
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("rawpy")
    h, w = a.shape[:2]
    x = a.astype(np.uint16) * 16  # 8 -> 12 bits
    cfa = np.zeros((h, w), np.uint16)
    cfa[0::2, 0::2], cfa[0::2, 1::2] = x[0::2, 0::2, 0], x[0::2, 1::2, 1]
    cfa[1::2, 0::2], cfa[1::2, 1::2] = x[1::2, 0::2, 1], x[1::2, 1::2, 2]
    identity = (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1)
    dng = [(50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "lookalike test camera", True),
           (274, "H", 1, orientation, True), (50721, "2i", 9, identity, True)]  # version, model, orientation, ColorMatrix1
    sensor = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50717, "H", 1, 4095, True)]
    with tifffile.TiffWriter(path) as tw:
        if preview:
            tw.write(a, photometric="rgb", subfiletype=1, subifds=1, extratags=dng)
            tw.write(cfa, photometric=32803, subfiletype=0, extratags=sensor)
        else:
            tw.write(cfa, photometric=32803, subfiletype=0, extratags=dng + sensor)
    return path


def assert_red_on_top(rgb: np.ndarray) -> None:
    h, w = rgb.shape[:2]
    assert h > w, f"not turned upright: {rgb.shape}"
    top, bottom = rgb[: h // 4].reshape(-1, 3).mean(0), rgb[-h // 4:].reshape(-1, 3).mean(0)
    assert top[0] > top[2] + 80 and bottom[2] > bottom[0] + 80, (top, bottom)


@pytest.mark.parametrize("save", [save_heic, save_avif], ids=["heic", "avif"])
def test_heic_and_avif_decode_with_orientation(tmp_path, save):
    p = save(tmp_path / f"photo.{save.__name__[5:]}", two_halves())
    assert is_image_name(p)
    rgb = load_image(p)
    assert rgb.shape == (64, 48, 3)
    assert_red_on_top(rgb)


@pytest.mark.parametrize("preview", [False, True], ids=["sensor-half-size", "embedded-preview"])
def test_raw_decodes_upright(tmp_path, preview):
    p = save_dng(tmp_path / "photo.dng", two_halves(), preview)
    rgb = load_image(p)
    # the preview is used whole; without one the sensor data is demosaiced at half size
    assert rgb.shape == ((64, 48, 3) if preview else (32, 24, 3))
    assert_red_on_top(rgb)


def test_raw_bytes_pil_does_not_know_are_read_by_rawpy(tmp_path):
    """Bytes with no file name to go by (an upload, the server's thumbnails): what PIL cannot
    identify is tried as a RAW file before being refused."""
    from lookalike.io import _raw_or_none

    p = save_dng(tmp_path / "photo.dng", two_halves(), preview=False)
    assert_red_on_top(np.asarray(_raw_or_none(p.read_bytes(), "<bytes>", None, 10**8)))
    assert _raw_or_none(b"junk" * 100, "<bytes>", None, 10**8) is None
    with pytest.raises(ImageError, match="not a recognised image format"):
        load_image(b"junk" * 100)


def test_corrupt_raw_is_one_reason(tmp_path):
    pytest.importorskip("rawpy")
    p = tmp_path / "broken.nef"
    p.write_bytes(b"not a raw file at all" * 50)
    with pytest.raises(ImageError, match="RAW"):
        load_image(p)


def test_heic_avif_raw_index_and_search_upright(tmp_path):
    """Each format is indexed and found by its upright picture, not by its stored (sideways) one."""
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(4):
        Image.fromarray(synthetic_photo(i)).save(d / f"other{i}.jpg", quality=92)
    a = np.asarray(Image.fromarray(synthetic_photo(7)).resize((96, 64)))
    samples = [save_heic(d / "a.heic", a), save_dng(d / "c.dng", a, preview=True)]
    if has_avif():
        samples.append(save_avif(d / "b.avif", a))
    ix = lookalike.open(tmp_path / "idx", pipeline="color")
    rep = ix.add(d)
    assert rep.failed == [] and rep.added == 4 + len(samples)
    for p in samples:
        by_path = {Path(h.path).name: h.score for h in ix.search(upright(a), k=20).hits}
        sideways = {Path(h.path).name: h.score for h in ix.search(a, k=20).hits}
        assert by_path[p.name] > 0.8, (p.name, by_path)
        assert sideways[p.name] < by_path[p.name] - 0.05
    ix.close()


# -- reduced decoding of large photos ------------------------------------------------------------
def test_draft_size_keeps_the_long_side():
    # PIL's draft keeps both sides at least the size asked for: a square box would stop a 4:3
    # photo at 1/4 scale when 1/8 already gives the long side needed
    assert draft_size(4000, 3000, 498) == (498, 374)
    assert draft_size(3000, 4000, 352) == (264, 352)


def test_large_jpeg_decodes_at_the_smallest_scale_that_suffices(tmp_path):
    p = tmp_path / "big.jpg"
    Image.fromarray(np.asarray(Image.fromarray(synthetic_photo(3)).resize((4000, 3000)))).save(p, quality=80)
    assert load_image(p, reduce_to=498).shape == (375, 500, 3)  # 1/8 scale: 500 >= 498
    assert load_image(p, reduce_to=352).shape == (375, 500, 3)  # 1/8 scale; never below what was asked
    assert load_image(p, reduce_to=600).shape == (750, 1000, 3)  # 1/4 scale: 500 would be too small
    png = tmp_path / "big.png"  # not a JPEG: shrunk to the side asked for
    Image.fromarray(synthetic_photo(3, (1600, 1200))).save(png)
    assert load_image(png, reduce_to=352).shape == (264, 352, 3)


def test_indexing_decodes_to_the_largest_scale_the_pipeline_needs(tmp_path):
    default, gem, color = (build(parse_spec(s)) for s in ("default", "gem", "color"))
    assert decode_side(default) == (498, None)  # long side 352 at scales 1 and sqrt(2)
    assert decode_side(gem) == (352, None)
    assert decode_side(color)[0] is None
    big = tmp_path / "big.jpg"
    Image.fromarray(np.asarray(Image.fromarray(synthetic_photo(4)).resize((4000, 3000)))).save(big, quality=80)
    assert read_one(str(big), decode_side(default)).image.shape == (375, 500, 3)
    small = tmp_path / "small.jpg"  # a small image decodes exactly as before: full size, untouched
    Image.fromarray(synthetic_photo(5, (500, 375))).save(small, quality=90)
    assert np.array_equal(read_one(str(small), decode_side(default)).image, load_image(small))
    variants = default.extractor.first.variants(read_one(str(big), decode_side(default)).image)
    assert [max(v.shape[:2]) for v in variants] == [352, 498]


def test_without_the_formats_extra_the_reason_names_it(tmp_path, monkeypatch):
    from lookalike import io

    p = save_dng(tmp_path / "photo.dng", two_halves(), preview=False)
    monkeypatch.setitem(__import__("sys").modules, "rawpy", None)  # as if rawpy were not installed
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)
    with pytest.raises(ImageError, match=r"lookalike\[formats\]"):
        load_image(p)
    assert "lookalike[formats]" in io._unrecognised("photo.heic")
