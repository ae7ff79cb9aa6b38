"""Filters combined with similarity, on generated images whose metadata is known: each filter
returns exactly the images it describes, k of them when k exist, through every store kind."""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_photo
from lookalike.api import Index
from lookalike.engine.filters import Filters
from lookalike.errors import BadInputError

CAMERAS = [("Canon", "Canon EOS 5D Mark IV"), ("NIKON CORPORATION", "NIKON D750"), None]


def exif(taken: datetime | None, camera: tuple[str, str] | None, orientation: int | None = None) -> Image.Exif:
    ex = Image.Exif()
    if taken is not None:
        ex.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if camera is not None:
        ex[0x010F], ex[0x0110] = camera
    if orientation is not None:
        ex[0x0112] = orientation
    return ex


def spec(i: int) -> dict:
    """The known metadata of generated image ``i``."""
    folder = ["a", "a/sub", "b"][i % 3]
    kind = "png" if i % 4 == 3 else "jpg"
    size = (320, 240) if i % 5 == 0 else (160, 120)
    taken = datetime(2020 + i % 3, 1 + i % 12, 10, 12, 0, 0)
    return {"name": f"{folder}/p{i:02d}.{kind}", "folder": folder, "type": kind, "size": size, "taken": taken,
            "camera": CAMERAS[i % 3] if kind == "jpg" else None}


N = 24


def make_collection(root: Path) -> Path:
    for i in range(N):
        s = spec(i)
        path = root / s["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(synthetic_photo(i, s["size"]))
        if s["type"] == "png":  # no EXIF: the date taken is the file's mtime
            im.save(path)
            t = s["taken"].timestamp()
            os.utime(path, (t, t))
        else:
            im.save(path, quality=92, exif=exif(s["taken"], s["camera"]))
    return root


@pytest.fixture(scope="module")
def coll(tmp_path_factory) -> Path:
    return make_collection(tmp_path_factory.mktemp("filters") / "photos")


@pytest.fixture(scope="module")
def idx(coll, tmp_path_factory):
    ix = Index(tmp_path_factory.mktemp("fidx") / "idx", "color")
    ix.add([coll])
    yield ix
    ix.close()


def names(hits) -> set[str]:
    return {Path(h.path).name for h in hits}


def expected(pred) -> set[str]:
    return {Path(spec(i)["name"]).name for i in range(N) if pred(spec(i))}


def test_metadata_is_stored_at_index_time(idx, coll):
    for i in (0, 3, 4):
        s = spec(i)
        row = idx.catalog.by_path(str(coll / s["name"]))
        assert (row.width, row.height) == s["size"]
        assert row.type == s["type"] and row.folder == str((coll / s["name"]).parent)
        assert row.taken == s["taken"].isoformat()
        want_camera = None if s["camera"] is None else s["camera"][1]
        assert row.camera == want_camera


@pytest.mark.parametrize("filters, pred", [
    ({"date_from": "2021-01-01", "date_to": "2021-12-31"}, lambda s: s["taken"].year == 2021),
    ({"date_from": "2020-04-10", "date_to": "2020-04-10"}, lambda s: s["taken"].date().isoformat() == "2020-04-10"),
    ({"camera": "nikon"}, lambda s: s["camera"] is not None and "NIKON" in s["camera"][1]),
    ({"camera": "eos 5d"}, lambda s: s["camera"] is not None and "Canon" in s["camera"][0]),
    ({"min_width": 300}, lambda s: s["size"][0] >= 300),
    ({"max_width": 200, "max_height": 130}, lambda s: s["size"] == (160, 120)),
    ({"types": "png"}, lambda s: s["type"] == "png"),
    ({"type": "jpeg,PNG"}, lambda s: True),
    ({"types": ["jpg"], "camera": "canon"}, lambda s: s["type"] == "jpg" and s["camera"] == CAMERAS[0]),
])
def test_each_filter_returns_exactly_its_images(idx, coll, filters, pred):
    want = expected(pred)
    assert want, "the test collection must hold images that pass"
    res = idx.search(coll / spec(1)["name"], k=N, filters=filters)
    assert names(res.hits) == want


def test_folder_filter_takes_subfolders(idx, coll):
    got = names(idx.search(coll / spec(2)["name"], k=N, filters={"folder": str(coll / "a")}).hits)
    assert got == expected(lambda s: s["folder"].startswith("a"))
    got = names(idx.search(coll / spec(2)["name"], k=N, filters=Filters(folder=str(coll / "a" / "sub"))).hits)
    assert got == expected(lambda s: s["folder"] == "a/sub")
    assert not idx.search(coll / spec(2)["name"], k=N, filters={"folder": str(coll / "a" / "su")}).hits


@pytest.mark.parametrize("store", ["flat", "hnsw", "ivfflat"])
def test_a_filter_gives_k_results_when_k_pass(coll, tmp_path, store):
    """The images nearest the query fail the filter; k that pass still come back, best first."""
    ix = Index(tmp_path / "idx", "color", store=store)
    ix.add([coll])
    query = coll / spec(0)["name"]  # in folder a
    unfiltered = ix.search(query, k=N).hits
    in_b = [h for h in unfiltered if "/b/" in h.path]
    assert unfiltered[0].path == str(query) and "/b/" not in unfiltered[0].path
    res = ix.search(query, k=5, filters={"folder": str(coll / "b")})
    assert len(res.hits) == 5 and all("/b/" in h.path for h in res.hits)
    assert [h.id for h in res.hits] == [h.id for h in in_b[:5]]
    np.testing.assert_allclose([h.score for h in res.hits], [h.score for h in in_b[:5]], rtol=1e-5)
    ix.close()


def test_filters_with_rerank_steps_and_rotation_keep_k(idx, coll):
    query = coll / spec(0)["name"]
    for kw in ({"rerank": "aqe"}, {"rotate": True}, {"rerank": "dba+aqe"}):
        res = idx.search(query, k=4, filters={"types": "png"}, **kw)
        assert len(res.hits) == 4 and all(h.path.endswith(".png") for h in res.hits), kw


def test_search_by_id_with_filters_and_hits_carry_metadata(idx, coll):
    first = idx.catalog.by_path(str(coll / spec(5)["name"]))
    res = idx.search(id=first.id, k=3, filters={"min_width": 300})
    assert len(res.hits) == 3 and all(h.width == 320 and h.height == 240 for h in res.hits)
    h = res.hits[0]
    s = spec(int(Path(h.path).stem[1:]))
    assert h.taken == s["taken"].isoformat() and h.type == s["type"]
    assert set(res.to_dict()["results"][0]) >= {"width", "height", "taken", "camera", "type"}


def test_offset_pages_through_the_ranking(idx, coll):
    query = coll / spec(7)["name"]
    whole = idx.search(query, k=12).hits
    page = idx.search(query, k=5, offset=5).hits
    assert [h.id for h in page] == [h.id for h in whole[5:10]] and [h.rank for h in page] == [6, 7, 8, 9, 10]
    filtered = idx.search(query, k=N, filters={"types": "jpg"}).hits
    assert [h.id for h in idx.search(query, k=3, offset=4, filters={"types": "jpg"}).hits] == \
        [h.id for h in filtered[4:7]]
    assert idx.search(query, k=5, offset=N).hits == []
    with pytest.raises(BadInputError):
        idx.search(query, offset=-1)


def test_bad_filters_are_one_line_errors(idx, coll):
    q = coll / spec(0)["name"]
    for bad in ({"date_from": "yesterday"}, {"min_width": "wide"}, {"colour": "red"}, {"max_height": -3}):
        with pytest.raises(BadInputError):
            idx.search(q, filters=bad)


def test_listing_and_facets(idx, coll):
    total, rows = idx.listing(0, 5, {"folder": str(coll / "b")})
    assert total == len(expected(lambda s: s["folder"] == "b")) and len(rows) == 5
    takens = [r.taken for r in rows]
    assert takens == sorted(takens, reverse=True)
    total_all, page = idx.listing(3, 4)
    assert total_all == N and len(page) == 4
    f = idx.facets()
    assert f["types"] == ["jpg", "png"] and f["width_max"] == 320 and f["height_max"] == 240
    assert set(f["cameras"]) == {"Canon EOS 5D Mark IV", "NIKON D750"}
    assert f["date_min"] == min(spec(i)["taken"] for i in range(N)).isoformat()
    assert len(f["folders"]) == 3


def as_schema_2(folder: Path) -> None:
    """Make an index look as schema 2 wrote it: no metadata columns, width/height as decoded."""
    import sqlite3

    db = sqlite3.connect(folder / "catalog.sqlite")
    db.execute("DROP INDEX images_meta")
    db.execute("DROP INDEX images_folder")
    for col in ("taken", "camera", "type", "folder"):
        db.execute(f"ALTER TABLE images DROP COLUMN {col}")
    db.execute("UPDATE images SET width = 1, height = 1")
    db.execute("UPDATE settings SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def test_an_index_of_schema_2_is_filled_in_by_a_writer_never_by_a_search(coll, tmp_path):
    from lookalike.errors import UnsupportedError

    ix = Index(tmp_path / "idx", "color")
    ix.add([coll])
    ix.close()
    as_schema_2(tmp_path / "idx")
    query = coll / spec(0)["name"]
    ro = Index(tmp_path / "idx", readonly=True)
    hits = ro.search(query, k=3).hits  # searches work, with no metadata
    assert len(hits) == 3 and hits[0].taken is None
    with pytest.raises(UnsupportedError, match="lookalike index"):
        ro.search(query, filters={"camera": "nikon"})
    assert ro.info()["schema_version"] == 2
    ro.close()
    ix = Index(tmp_path / "idx")  # a writer migrates: metadata read from the files' headers
    assert ix.info()["schema_version"] == 4
    got = names(ix.search(query, k=N, filters={"camera": "nikon", "min_width": 300}).hits)
    assert got == expected(lambda s: s["camera"] == CAMERAS[1] and s["size"][0] >= 300)
    row = ix.catalog.by_path(str(coll / spec(3)["name"]))
    assert (row.width, row.height, row.type, row.taken) == (160, 120, "png", spec(3)["taken"].isoformat())
    ix.close()


def test_the_0_2_fixture_gets_metadata_from_paths_and_mtimes(tmp_path):
    import shutil

    src = Path(__file__).parent / "data" / "index-0.2" / "color"
    shutil.copytree(src, tmp_path / "old")
    ix = Index(tmp_path / "old")  # its files are gone: type, folder and date from what the catalog kept
    row = ix.catalog.get(1)
    assert row.type == "jpg" and row.folder == os.path.dirname(row.path)
    assert row.taken == datetime.fromtimestamp(row.mtime).isoformat(timespec="seconds")
    assert len(ix.search(id=1, k=50, filters={"types": "jpg"}).hits) == ix.catalog.counts()["ok"]
    ix.close()


def test_kept_filter_results_follow_a_write(coll, tmp_path):
    ix = Index(tmp_path / "idx", "color")
    ix.add([coll / "b"])
    q = coll / spec(2)["name"]
    before = names(ix.search(q, k=N, filters={"types": "png"}).hits)
    extra = tmp_path / "more"
    extra.mkdir()
    Image.fromarray(synthetic_photo(77)).save(extra / "new.png")
    ix.add([extra])
    assert names(ix.search(q, k=N, filters={"types": "png"}).hits) == before | {"new.png"}
    ix.close()
