"""Defects found by using lookalike as a new user would; each test failed on the code before its fix."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import lookalike
from conftest import synthetic_photo
from lookalike.cli import app
from lookalike.errors import BadInputError, ImageError
from lookalike.io import decode, load_image


def photos(root: Path, n: int = 3) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = root / f"img{i}.jpg"
        Image.fromarray(synthetic_photo(i)).save(p, quality=90)
        out.append(p)
    return out


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_reason(tmp_path):
    d = tmp_path / "p"
    photos(d, 2)
    bad = os.fsencode(str(d)) + b"/caf\xe9.jpg"  # latin-1 bytes: not UTF-8
    with open(bad, "wb") as f:
        f.write((d / "img0.jpg").read_bytes())
    r = CliRunner().invoke(app, ["index", str(d), "--index", str(tmp_path / "i"), "-p", "color", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["added"] == 2 and "not valid UTF-8" in rep["failed"][0]["reason"]


def test_a_very_elongated_image_is_described(tmp_path):
    strip = np.tile(np.linspace(0, 255, 10000, dtype=np.uint8)[None, :, None], (10, 1, 3))
    Image.fromarray(strip).save(tmp_path / "strip.png")
    photos(tmp_path, 2)
    idx = lookalike.open(tmp_path / "i", pipeline="gem")
    rep = idx.add([tmp_path / "strip.png", tmp_path / "img0.jpg", tmp_path / "img1.jpg"])
    assert rep.added == 3 and rep.failed == []
    assert idx.search(tmp_path / "strip.png", k=1).hits[0].path.endswith("strip.png")
    idx.close()


def test_large_camera_jpegs_decode_small_and_huge_pngs_are_refused():
    jpeg = io.BytesIO()
    Image.new("RGB", (12000, 9000), (90, 140, 200)).save(jpeg, "JPEG", quality=85)  # 108 MP
    rgb = decode(jpeg.getvalue(), "camera.jpg", max_side=704)
    assert max(rgb.shape[:2]) == 704
    full = decode(jpeg.getvalue(), "camera.jpg")  # no size asked: decoded at 1/2, under the limit
    assert full.shape[:2] == (4500, 6000)
    png = io.BytesIO()  # 2,000 x 2,000 PNG against a 1 MP limit: refused (PNGs cannot decode small)
    Image.new("RGB", (2000, 2000)).save(png, "PNG")
    with pytest.raises(ImageError, match="decompression bomb"):
        decode(png.getvalue(), "big.png", max_pixels=1_000_000)
    small = io.BytesIO()
    Image.new("RGB", (2000, 2000)).save(small, "JPEG")
    assert decode(small.getvalue(), "ok.jpg", max_pixels=1_000_000).shape[:2] == (1000, 1000)


def test_remove_counts_each_image_once_and_says_when_nothing_was_removed(tmp_path):
    d = tmp_path / "p"
    photos(d, 2)
    photos(d / "sub", 2)
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(d), "--index", str(tmp_path / "i"), "-p", "color", "-q"]).exit_code == 0
    r = runner.invoke(app, ["remove", str(d), str(d / "sub"), "--index", str(tmp_path / "i"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["removed"] == 4
    r = runner.invoke(app, ["remove", str(tmp_path / "elsewhere"), "--index", str(tmp_path / "i")])
    assert r.exit_code == 1 and "nothing was removed" in r.stderr


def test_query_images_in_every_usual_form(tmp_path):
    ps = photos(tmp_path / "p", 3)
    idx = lookalike.open(tmp_path / "i", pipeline="color")
    idx.add(ps)
    rgb = load_image(ps[1])
    first = lambda q: idx.search(q, k=1).hits[0].path  # noqa: E731
    assert first(Image.open(ps[1])) == str(ps[1])
    with open(ps[1], "rb") as f:
        assert first(f) == str(ps[1])
    assert first(io.BytesIO(ps[1].read_bytes())) == str(ps[1])
    assert first(memoryview(ps[1].read_bytes())) == str(ps[1])
    assert first(rgb.astype(np.float32) / 255.0) == str(ps[1])
    assert first(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])) == str(ps[1])  # RGBA
    assert idx.search(rgb.mean(axis=2).astype(np.uint8), k=1).hits  # grey (H, W)
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 5), np.uint8), 42, "x" * 0):
        with pytest.raises((BadInputError, ImageError)):
            idx.search(bad, k=1)
    for k in (0, -1, 2.5):
        with pytest.raises(BadInputError, match="k must"):
            idx.search(ps[0], k=k)
    idx.close()


def test_an_empty_text_query_is_refused(tmp_path):
    ps = photos(tmp_path / "p", 1)
    idx = lookalike.open(tmp_path / "i", pipeline="color")
    idx.add(ps)
    idx.close()
    r = CliRunner().invoke(app, ["search", "--text", " ", "--index", str(tmp_path / "i")])
    assert r.exit_code == 1 and "empty" in r.stderr


def test_a_fifo_gets_the_same_reason_when_indexed_and_when_queried(tmp_path):
    d = tmp_path / "p"
    photos(d, 1)
    os.mkfifo(d / "pipe.jpg")
    idx = lookalike.open(tmp_path / "i", pipeline="color")
    rep = idx.add(d)
    reason = dict(rep.failed)[str(d / "pipe.jpg")]
    with pytest.raises(ImageError) as e:
        idx.search(d / "pipe.jpg")
    assert e.value.reason == reason == "not a regular file"
    idx.close()


def test_nothing_to_do_draws_no_empty_bar_and_times_say_took(tmp_path):
    ps = photos(tmp_path / "p", 1)
    runner = CliRunner()
    args = ["index", str(tmp_path / "p"), "--index", str(tmp_path / "i"), "-p", "color"]
    assert runner.invoke(app, args).exit_code == 0
    r = runner.invoke(app, args)  # unchanged: nothing to describe
    assert r.exit_code == 0 and "0/?" not in r.output and "unchanged 1" in r.output
    r = runner.invoke(app, ["search", str(ps[0]), "--index", str(tmp_path / "i")])
    assert "took" in r.stdout and "spend" not in r.stdout


def test_average_precision_by_both_rules():
    from lookalike.eval.metrics import average_precision, average_precision_trapezoid, summarise

    rel = np.array([True, False, True, False])
    assert average_precision(rel, 2) == pytest.approx((1 + 2 / 3) / 2)
    # trapezoid: hit 0 at rank 0 -> (1 + 1/1)/2; hit 1 at rank 2 -> (1/2 + 2/3)/2
    assert average_precision_trapezoid(rel, 2) == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)
    s = summarise([rel], [2])
    assert s["mAP_trapezoid"] < s["mAP"]


def test_min_score_leaves_out_weaker_results(tmp_path):
    ps = photos(tmp_path / "p", 3)
    idx = lookalike.open(tmp_path / "i", pipeline="color")
    idx.add(ps)
    idx.close()
    r = CliRunner().invoke(app, ["search", str(ps[0]), "--index", str(tmp_path / "i"), "--json", "--min-score", "0.99"])
    hits = json.loads(r.stdout)["results"]
    assert r.exit_code == 0 and [h["path"] for h in hits] == [str(ps[0])]
