"""Thumbnails made by the writer: one per content, bounded in size, dropped with their last image."""
from __future__ import annotations

import hashlib
import io
import shutil

import pytest
from PIL import Image

import lookalike
from conftest import synthetic_photo
from lookalike.engine import writer as writer_module
from lookalike.engine.thumbs import THUMB_SIDE, ThumbStore


def sha1(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def stored(index_dir) -> set[str]:
    return ThumbStore(index_dir / "thumbs.sqlite", readonly=True).digests()


def test_made_at_index_time_shared_by_content_and_dropped_with_the_last_image(photo_dir, tmp_path):
    big = photo_dir / "big.png"
    Image.fromarray(synthetic_photo(50, size=(1200, 600))).save(big)
    shutil.copy(photo_dir / "img1.jpg", photo_dir / "copy of img1.jpg")
    ix = lookalike.open(tmp_path / "idx", pipeline="color")
    ix.add(photo_dir)
    files = sorted(p for p in photo_dir.rglob("*") if p.is_file())
    assert stored(tmp_path / "idx") == {sha1(p) for p in files}  # 10 files, 9 contents
    thumb = Image.open(io.BytesIO(ThumbStore(tmp_path / "idx" / "thumbs.sqlite").read(sha1(big))))
    assert thumb.format == "JPEG" and thumb.size == (THUMB_SIDE, THUMB_SIDE // 2)

    ix.remove(photo_dir / "img1.jpg")  # its copy still has the content
    assert sha1(photo_dir / "img1.jpg") in stored(tmp_path / "idx")
    ix.remove(photo_dir / "copy of img1.jpg")
    assert sha1(photo_dir / "img1.jpg") not in stored(tmp_path / "idx")
    (photo_dir / "img1.jpg").unlink()
    (photo_dir / "copy of img1.jpg").unlink()

    old = sha1(photo_dir / "img2.jpg")
    Image.fromarray(synthetic_photo(99)).save(photo_dir / "img2.jpg")  # changed content: new thumbnail
    (photo_dir / "img3.jpg").unlink()
    rep = ix.add(photo_dir, prune=True)
    assert rep.updated == 1 and rep.removed == 1
    left = {sha1(p) for p in photo_dir.rglob("*") if p.is_file()}
    assert stored(tmp_path / "idx") == left and old not in left
    ix.close()


def test_a_failed_batch_leaves_at_worst_an_unused_thumbnail(photo_dir, tmp_path, monkeypatch):
    ix = lookalike.open(tmp_path / "idx", pipeline="color")

    def broken_follow(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(writer_module.Writer, "_ensure_schema", broken_follow)  # dies inside the transaction
    with pytest.raises(RuntimeError):
        ix.add(photo_dir)
    assert ix.catalog.counts()["ok"] == 0 and len(stored(tmp_path / "idx")) > 0  # files, but no rows
    ix.close()
    monkeypatch.undo()
    (photo_dir / "img0.jpg").unlink()  # its thumbnail is left unused
    with lookalike.open(tmp_path / "idx") as again:
        again.add(photo_dir)
        assert again.catalog.counts()["ok"] == 7
        assert {sha1(p) for p in photo_dir.rglob("*.jpg")} == stored(tmp_path / "idx")  # the next run sweeps


def test_searches_and_read_only_opens_make_no_thumbnails(photo_dir, tmp_path):
    with lookalike.open(tmp_path / "idx", pipeline="color") as ix:
        ix.add(photo_dir)
    for p in (tmp_path / "idx").glob("thumbs.sqlite*"):
        p.unlink()
    with lookalike.open(tmp_path / "idx", readonly=True) as ro:
        assert ro.search(photo_dir / "img3.jpg", k=3).hits[0].path.endswith("img3.jpg")
    assert not list((tmp_path / "idx").glob("thumbs.sqlite*"))


def test_thumbnails_older_servers_cached_in_the_index_folder_are_not_indexed(photo_dir):
    with lookalike.open(photo_dir / "idx", pipeline="color") as ix:
        ix.add(photo_dir)
        (photo_dir / "idx" / "thumbs").mkdir()
        shutil.copy(photo_dir / "img1.jpg", photo_dir / "idx" / "thumbs" / "1-0123456789abcdef.jpg")
        rep = ix.add(photo_dir)
        assert rep.added == 0 and rep.unchanged == 8

