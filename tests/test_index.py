"""The index end to end on the colour pipeline: incremental add, prune, remove, bad files, search."""
from __future__ import annotations

import os

import pytest
from PIL import Image

import lookalike
from conftest import synthetic_photo
from lookalike.api import Index
from lookalike.errors import ConflictError as IndexError_


def test_add_search_and_incremental(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    rep = idx.add([photo_dir])
    assert (rep.added, rep.unchanged, len(rep.failed)) == (8, 0, 0)
    res = idx.search(photo_dir / "img3.jpg", k=3)
    assert res.hits[0].path.endswith("img3.jpg") and res.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert res.took_ms > 0 and len(res.hits) == 3
    # unchanged files are skipped; a changed one is re-described under the same id
    rep = idx.add([photo_dir])
    assert (rep.added, rep.updated, rep.unchanged) == (0, 0, 8)
    old_id = idx.catalog.by_path(str(photo_dir / "img2.jpg")).id
    Image.fromarray(synthetic_photo(99)).save(photo_dir / "img2.jpg")
    rep = idx.add([photo_dir])
    assert (rep.added, rep.updated, rep.unchanged) == (0, 1, 7)
    assert idx.catalog.by_path(str(photo_dir / "img2.jpg")).id == old_id
    assert len(idx) == 8
    idx.close()


def test_prune_and_remove(photo_dir, tmp_path):
    idx = Index(tmp_path / "idx", "color")
    idx.add([photo_dir])
    os.remove(photo_dir / "img0.jpg")
    rep = idx.add([photo_dir], prune=True)
    assert rep.removed == 1 and len(idx) == 7
    assert idx.remove([photo_dir / "sub"]) == 1 and len(idx) == 6
    hits = idx.search(photo_dir / "img1.jpg", k=10).hits
    assert all("img0" not in h.path and "/sub/" not in h.path for h in hits)
    idx.close()
    # reopened from disk, the same state
    idx = lookalike.open(tmp_path / "idx")
    assert len(idx) == 6 and idx.info()["images"] == 6
    idx.close()


def test_bad_files_are_skipped_and_recorded(photo_dir, tmp_path):
    (photo_dir / "empty.jpg").write_bytes(b"")
    (photo_dir / "text.jpg").write_text("not an image")
    good = photo_dir / "img1.jpg"
    (photo_dir / "trunc.jpg").write_bytes(good.read_bytes()[:300])
    (photo_dir / "loop").symlink_to(photo_dir)  # a folder symlink loop is not followed
    (photo_dir / "l1.jpg").symlink_to(photo_dir / "l2.jpg")
    (photo_dir / "l2.jpg").symlink_to(photo_dir / "l1.jpg")
    (photo_dir / "notes.txt").write_text("ignored: not an image name")
    messages = []
    idx = Index(tmp_path / "idx", "color")
    rep = idx.add([photo_dir, tmp_path / "missing-folder"], on_error=lambda p, r: messages.append((p, r)))
    assert rep.added == 8
    failed = dict(rep.failed)
    assert "empty" in failed[str(photo_dir / "empty.jpg")]
    assert "not a recognised image" in failed[str(photo_dir / "text.jpg")]
    assert "truncated" in failed[str(photo_dir / "trunc.jpg")]
    assert str(photo_dir / "l1.jpg") in failed and str(tmp_path / "missing-folder") in failed
    info = idx.info()
    assert info["images"] == 8 and info["errors"] >= 5
    assert {s["path"] for s in info["skipped"]} >= {str(photo_dir / "empty.jpg"), str(photo_dir / "text.jpg")}
    assert len(messages) == len(rep.failed)
    idx.close()


def test_unreadable_file_is_skipped(photo_dir, tmp_path, monkeypatch):
    import builtins

    target = str(photo_dir / "img4.jpg")
    real_open = builtins.open

    def guarded(file, *a, **kw):
        if str(file) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(file, *a, **kw)

    monkeypatch.setattr(builtins, "open", guarded)
    idx = Index(tmp_path / "idx", "color")
    rep = idx.add([photo_dir])
    assert rep.added == 7 and "Permission denied" in dict(rep.failed)[target]
    idx.close()


def test_pipeline_mismatch_is_refused(photo_dir, tmp_path):
    Index(tmp_path / "idx", "color").close()
    with pytest.raises(IndexError_, match="built with pipeline 'color'"):
        Index(tmp_path / "idx", "default")


def test_damaged_vector_file_is_rebuilt(photo_dir, tmp_path):
    idx = Index(tmp_path / "idx", "color")
    idx.add([photo_dir])
    idx.close()
    (tmp_path / "idx" / "vectors.faiss").write_bytes(b"garbage")
    idx = Index(tmp_path / "idx")
    assert len(idx) == 8
    assert idx.search(photo_dir / "img5.jpg", k=1).hits[0].path.endswith("img5.jpg")
    idx.close()


def test_search_by_id_and_query_errors(photo_dir, tmp_path):
    from lookalike.io import ImageError

    idx = Index(tmp_path / "idx", "color")
    idx.add([photo_dir])
    iid = idx.catalog.by_path(str(photo_dir / "img6.jpg")).id
    assert idx.search(id=iid, k=1).hits[0].id == iid
    (tmp_path / "q.jpg").write_text("nope")
    with pytest.raises(ImageError):
        idx.search(tmp_path / "q.jpg")
    with pytest.raises(NotImplementedError, match="text queries are not supported"):
        idx.search(text="a cat")
    idx.close()


@pytest.mark.parametrize("compare", ["pearson", "bhattacharyya", "chi2", "cosine"])
def test_color_comparisons_find_the_near_duplicate(photo_dir, tmp_path, compare):
    idx = Index(tmp_path / f"idx-{compare}", "color", {"compare": compare})
    idx.add([photo_dir])
    q = tmp_path / "q.jpg"
    Image.fromarray(synthetic_photo(5)[5:-5, 5:-5]).save(q)  # a slight crop of img5
    hits = idx.search(q, k=3).hits
    assert hits[0].path.endswith("img5.jpg")
    assert hits[0].score >= hits[1].score >= hits[2].score
    idx.close()
