"""Duplicates: groups of copies (and not the other shot), presets, keep policies, reference folders,
the CLI's dry run and confirmation, journaled moves that survive a kill, fingerprints in the index."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

import lookalike
from dupdata import COPIES, jpeg, make_collection, scene
from lookalike.cli import main
from lookalike.engine import duplicates as dup
from lookalike.engine.migrations import SCHEMA_VERSION
from lookalike.engine.relocate import JOURNAL, finish, move_files, unfinished
from lookalike.errors import BadInputError

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dups")
    photos = make_collection(root)
    idx = lookalike.open(root / "idx", pipeline="color")
    idx.add(photos)
    idx.close()
    return root


@pytest.fixture(scope="module")
def report(collection) -> dup.DuplicateReport:
    """The default search on the collection, every verified score kept (computed once)."""
    idx = lookalike.open(collection / "idx", readonly=True)
    rep = dup.find_duplicates(idx, all_scores=True)
    rep.paths = {i: Path(r.path).name for i, r in idx.catalog.rows(idx.catalog.ok_ids().tolist()).items()}
    idx.close()
    return rep


def names(group: dup.Group) -> set[str]:
    return {Path(m.path).name for m in group.members}


def fresh_copy(collection: Path, tmp_path: Path) -> Path:
    """A private copy of the collection (photos and a new index) for tests that move files."""
    photos = make_collection(tmp_path)
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add(photos)
    idx.close()
    return tmp_path


def test_groups_the_copies_and_not_the_other_shot(report):
    rep = report
    groups = sorted(rep.groups, key=lambda g: -len(g.members))
    assert names(groups[0]) == {"original.png", *COPIES}
    assert names(groups[1]) == {"unrelated_a.png", "unrelated_a copy.png", "unrelated_a.bmp"}
    assert len(groups) == 2  # the other shot of the scene and the unrelated photo are in none
    for g in groups:
        centre = g.members[0]
        assert centre.kind is None
        for m in g.members[1:]:
            assert m.score >= rep.threshold and m.kind in dup.KINDS
        assert len(g.keep) == 1 and len(g.remove) == len(g.members) - 1
    by_name = {Path(m.path).name: m for m in groups[0].members}
    for name, (_, kinds) in COPIES.items():
        if by_name[name].kind is not None:
            assert by_name[name].kind in kinds, (name, by_name[name])
    exact = {Path(m.path).name: m.kind for m in groups[1].members}
    assert sorted(k for k in exact.values() if k) in (["exact", "pixels"], ["pixels", "pixels"])
    # the largest resolution is kept: never a resized or cropped copy
    assert Path(groups[0].keep[0].path).name not in ("resized.jpg", "cropped.jpg")


def test_other_shot_scores_below_the_threshold(report):
    rep, path = report, report.paths
    shot = [p for p in rep.timings["pairs"] if "other_shot.png" in (path[p["a"]], path[p["b"]])
            and {path[p["a"]], path[p["b"]]} & {"original.png", *COPIES}]
    assert shot, "the other shot must at least be a candidate of its scene"
    assert max(p["score"] for p in shot) < rep.threshold


def test_presets_and_bad_options(collection, report):
    idx = lookalike.open(collection / "idx", readonly=True)
    try:
        exact = idx.duplicates("exact")
        assert [names(g) for g in exact.groups] == [{"unrelated_a.png", "unrelated_a copy.png", "unrelated_a.bmp"}]
        near = idx.duplicates("near")
        kinds = {m.kind for g in near.groups for m in g.members} - {None}
        assert kinds <= {"exact", "pixels", "near"}
        assert "cropped.jpg" not in set().union(*(names(g) for g in near.groups))  # a crop is an edit
        for bad in (dict(preset="fuzzy"), dict(keep="prettiest"), dict(threshold=1.5)):
            with pytest.raises(BadInputError):
                idx.duplicates(**bad)
        verified = [p for p in report.timings["pairs"] if p["kind"] in ("near", "edited")]
        assert any(p["score"] < 1.0 for p in verified if p["score"] >= report.threshold)
    finally:
        idx.close()


def test_only_plausible_copies_are_aligned(collection, report):
    """Candidates whose hashes disagree are aligned only from the cosine floor up, and the
    ``near`` preset, which reports no edits, aligns none of them."""
    far = [p for p in report.timings["pairs"] if p["kind"] == "edited"]
    assert far and all(p["bits"] is None or p["bits"] > dup.NEAR_BITS for p in far)
    assert all(p["cosine"] is not None for p in report.timings["pairs"] if p["kind"] in ("near", "edited"))
    idx = lookalike.open(collection / "idx", readonly=True)
    try:
        strict = dup.find_duplicates(idx, all_scores=True, copy_cosine=1.01)  # above any cosine
        assert strict.skipped == len(far) and strict.verified == report.verified - len(far)
        assert all(p["kind"] != "edited" for p in strict.timings["pairs"])
        grouped = set().union(*(names(g) for g in strict.groups))
        assert {"original.png", "resized.jpg", "recompressed.jpg", "turned.jpg"} <= grouped
        assert "cropped.jpg" not in grouped
        near = idx.duplicates("near")
        assert near.skipped == len(far) and near.verified == strict.verified
    finally:
        idx.close()


@pytest.mark.parametrize("policy", dup.KEEP_POLICIES)
def test_keep_policies(report, policy):
    import copy

    rep = copy.deepcopy(report)
    for g in rep.groups:
        dup._suggest(g.members, policy)
    for g in rep.groups:
        kept = g.keep[0]
        others = g.members
        if policy == "resolution":
            assert kept.width * kept.height == max(m.width * m.height for m in others)
        elif policy == "size":
            assert kept.size == max(m.size for m in others)
        elif policy == "oldest":
            assert kept.mtime == min(m.mtime for m in others)
        elif policy == "newest":
            assert kept.mtime == max(m.mtime for m in others)
        else:
            assert len(kept.path) == min(len(m.path) for m in others)


def test_reference_folder_is_always_kept(collection):
    ref = collection / "photos" / "more"
    idx = lookalike.open(collection / "idx", readonly=True)
    rep = idx.duplicates(reference=[ref])
    idx.close()
    group = next(g for g in rep.groups if "unrelated_a.png" in names(g))
    for m in group.members:
        in_ref = Path(m.path).parent == ref
        assert m.reference == in_ref
        if in_ref:
            assert m.action == "keep"
    assert {Path(m.path).name for m in group.remove} == {"unrelated_a.png"}


def test_no_chains_through_look_alikes():
    rows = {i: type("R", (), dict(path=f"/p/{i}.jpg", width=10, height=10, size=1, mtime=0.0))() for i in range(1, 6)}
    path = {(i, i + 1): dup.Pair(i, i + 1, "edited", 0.99) for i in range(1, 5)}  # 1~2~3~4~5, nothing else
    groups = dup._group(path, rows, "resolution", [])
    for g in groups:
        ids = [m.id for m in g.members]
        centre = ids[0]
        assert all((min(centre, j), max(centre, j)) in path for j in ids[1:]), ids
    assert not any({1, 4} <= {m.id for m in g.members} for g in groups)
    assert sum(len(g.members) for g in groups) <= 5


def test_descriptor_and_phash_candidates_by_range_search():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(3000, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs[1000] = vecs[10] + 0.05 * rng.normal(size=64)
    vecs[2000] = vecs[20] + 0.05 * rng.normal(size=64)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(3000, dtype=np.int64) + 7
    for exact_up_to in (10**6, 100):  # flat, and the inverted file used for large indexes
        pairs, cos = dup.descriptor_pairs(ids, vecs, 0.8, exact_up_to=exact_up_to)
        assert {tuple(p) for p in pairs.tolist()} == {(17, 1007), (27, 2007)}
        assert np.allclose(cos, (vecs[pairs[:, 0] - 7] * vecs[pairs[:, 1] - 7]).sum(1), atol=1e-5)
        assert ((0.8 <= cos) & (cos <= 1.0 + 1e-6)).all()
    a = scene(5)
    from lookalike.features.hashes import dihedral_phashes

    hashes = np.stack([dihedral_phashes(a), dihedral_phashes(np.rot90(a)), dihedral_phashes(scene(6))])
    for both_ways_up_to in (10**6, 0):  # each pair both ways, and once (large indexes)
        for order in ([1, 2, 3], [3, 2, 1]):  # b turned from a, whichever row comes first
            rows = np.array(order) - 1
            pairs, bits, orient = dup.phash_pairs(np.array(order), hashes[rows], both_ways_up_to=both_ways_up_to)
            assert pairs.tolist() == [[1, 2]]
            assert bits[0] <= 2 and dup.ORIENTATIONS[orient[0]] == "rot90"


def test_no_fingerprints_computed_in_memory_read_only(collection, tmp_path):
    """An index without stored fingerprints (written before schema 3) still finds the groups, and
    a read-only search writes nothing."""
    import shutil

    shutil.copytree(collection / "idx", tmp_path / "idx")
    db = sqlite3.connect(tmp_path / "idx" / "catalog.sqlite")
    db.execute("DROP TABLE image_hashes")
    db.execute("UPDATE settings SET value='3' WHERE key='schema_version'")
    db.commit()
    db.close()
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in (tmp_path / "idx").iterdir()}
    idx = lookalike.open(tmp_path / "idx", readonly=True)
    rep = idx.duplicates()
    idx.close()
    assert sorted(len(g.members) for g in rep.groups) == [3, 7]
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in (tmp_path / "idx").iterdir()}
    assert after == before
    # a writer migrates it to the current schema; new images get fingerprints
    idx = lookalike.open(tmp_path / "idx")
    assert idx.catalog.get_setting("schema_version") == SCHEMA_VERSION == 4
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(scene(9)).save(extra / "nine.png")
    idx.add(extra)
    assert len(idx.catalog.hashes()) == 1
    idx.close()


def test_fingerprints_follow_updates_and_removals(tmp_path):
    photos = make_collection(tmp_path, with_exact=False)
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add(photos)
    assert len(idx.catalog.hashes()) == len(idx)
    (photos / "resized.jpg").unlink()
    (photos / "cropped.jpg").write_bytes(b"broken now")
    os.utime(photos / "cropped.jpg", (1, 1))
    idx.add(photos, prune=True)
    stored = idx.catalog.hashes()
    files = [p for p in photos.rglob("*") if p.is_file()]
    assert len(stored) == len(idx) == len(files) - 1 == 8  # not the broken one
    n_rows = idx.catalog.db.execute("SELECT COUNT(*) FROM image_hashes").fetchone()[0]
    assert n_rows == 8
    idx.close()


# -- the command ------------------------------------------------------------------------------------
def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_csv_and_contact_sheet(collection, tmp_path, capsys):
    sheet, table = tmp_path / "sheet.png", tmp_path / "groups.csv"
    code, out, err = run_cli(["duplicates", "--index", str(collection / "idx"), "--json", "--csv", str(table),
                              "--contact-sheet", str(sheet)], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["preset"] == "edited" and doc["threshold"] == dup.PRESETS["edited"]["threshold"]
    assert sorted(len(g["members"]) for g in doc["groups"]) == [3, 7] and doc["duplicates"] == 8
    rows = table.read_text().splitlines()
    assert rows[0].startswith("group,id,path,action") and len(rows) == 1 + 10
    im = Image.open(sheet)
    assert im.format == "PNG" and im.width > 7 * 160 and im.height > 2 * 160
    assert len(np.unique(np.asarray(im.convert("L")))) > 50  # thumbnails drawn, not a blank page
    code, out, err = run_cli(["duplicates", "--index", str(collection / "idx"), "--preset", "fuzzy"], capsys)
    assert code == 1 and "unknown preset" in err and "Traceback" not in err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_moves_nothing_without_yes(collection, tmp_path, capsys):
    root = fresh_copy(collection, tmp_path)
    before = snapshot(root / "photos")
    dest = tmp_path / "moved"
    for action in (["--move-to", str(dest)], ["--trash"]):
        code, out, err = run_cli(["duplicates", "--index", str(root / "idx"), *action], capsys)
        assert code == 0, err
        assert "dry run" in out and "--yes" in out
        assert snapshot(root / "photos") == before
        assert not dest.exists() or not any(dest.iterdir())
    code, out, _ = run_cli(["duplicates", "--index", str(root / "idx"), "--move-to", str(dest), "--json"], capsys)
    assert json.loads(out)["action"]["dry_run"] is True and snapshot(root / "photos") == before


def test_cli_moves_with_yes_and_never_touches_reference(collection, tmp_path, capsys):
    root = fresh_copy(collection, tmp_path)
    ref = root / "photos" / "more"
    ref_before = snapshot(ref)
    everything = snapshot(root / "photos")
    dest = tmp_path / "moved"
    code, out, err = run_cli(["duplicates", "--index", str(root / "idx"), "--reference", str(ref),
                              "--move-to", str(dest), "--yes", "--json"], capsys)
    assert code == 0, err
    action = json.loads(out)["action"]
    assert action["dry_run"] is False and len(action["moved"]) == 7  # 6 of the scene's 7, 1 of 3 (not the reference ones)
    assert snapshot(ref) == ref_before
    after = snapshot(root / "photos")
    moved = snapshot(dest)
    assert len(after) + len([k for k in moved if not k.startswith(".")]) == len(everything)
    for rel, data in moved.items():  # moved files are intact, under their folder's relative path
        if not rel.startswith(".lookalike"):
            assert data == everything[rel]
    idx = lookalike.open(root / "idx", readonly=True)
    assert len(idx) == 12 - 7  # the index forgot the moved files
    left = idx.duplicates().groups  # only the reference folder's own pair (both always kept)
    assert [{Path(m.path).parent for m in g.members} for g in left] == [{ref}]
    idx.close()


def test_refuses_both_actions_and_missing_reference(collection, capsys, tmp_path):
    code, _, err = run_cli(["duplicates", "--index", str(collection / "idx"), "--trash", "--move-to", str(tmp_path)], capsys)
    assert code == 1 and "not both" in err
    code, _, err = run_cli(["duplicates", "--index", str(collection / "idx"), "--reference", str(tmp_path / "nope")], capsys)
    assert code == 1 and "does not exist" in err


# -- moves that survive a kill -----------------------------------------------------------------------
MOVER = """
import os, sys, time
sys.path.insert(0, {src!r})
from lookalike.engine import relocate
if {copy}:  # as across file systems: copy, fsync, rename into place, then unlink
    def no_link(a, b):
        raise OSError(18, "Invalid cross-device link")
    os.link = no_link
files = sorted(os.path.join({folder!r}, f) for f in os.listdir({folder!r}))
print("ready", flush=True)
relocate.move_files(files, {dest!r}, after_each=lambda s, d: time.sleep(0.02))
"""


@pytest.mark.parametrize("copy", [False, True])
def test_interrupted_move_loses_nothing(tmp_path, copy):
    folder, dest = tmp_path / "files", tmp_path / "dest"
    folder.mkdir()
    rng = np.random.default_rng(0)
    contents = {f"f{i:03d}.bin": rng.bytes(int(rng.integers(1, 300_000))) for i in range(150)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    proc = subprocess.Popen([sys.executable, "-c", MOVER.format(src=str(SRC), copy=copy, folder=str(folder),
                                                                 dest=str(dest))], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(dest.glob("f*.bin"))) < 20:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    moved = {p.name for p in dest.glob("f*.bin")}
    assert 20 <= len(moved) < 150, "the kill must land in the middle of the run"
    for name, data in contents.items():
        places = [p for p in (folder / name, dest / name) if p.exists()]
        assert places, f"{name} was lost"
        assert all(p.read_bytes() == data for p in places), f"{name} was damaged"
    rest = unfinished(dest)
    assert rest and {Path(s).name for s, _ in rest} >= set(contents) - moved
    finish(dest)
    assert not unfinished(dest)
    assert {p.name for p in dest.glob("f*.bin")} == set(contents) and not list(folder.iterdir())
    assert all((dest / n).read_bytes() == d for n, d in contents.items())
    assert not list(dest.glob("*.lookalike-part")) or copy  # a killed copy may leave a partial temp file
    assert (dest / JOURNAL).exists()


def test_finish_after_a_kill_between_a_copy_and_the_removal_of_its_source(tmp_path):
    """Across file systems a move is copy, rename into place, unlink: killed between the last two,
    both files exist (equal, not one file); finishing removes the source, keeps the copy."""
    folder, dest = tmp_path / "files", tmp_path / "dest"
    folder.mkdir()
    dest.mkdir()
    (folder / "a.jpg").write_bytes(b"same bytes")
    (dest / "a.jpg").write_bytes(b"same bytes")
    (dest / JOURNAL).write_text(json.dumps({"move": str(folder / "a.jpg"), "to": str(dest / "a.jpg")}) + "\n")
    rep = finish(dest)
    assert rep.moved == [(str(folder / "a.jpg"), str(dest / "a.jpg"))]
    assert not (folder / "a.jpg").exists() and (dest / "a.jpg").read_bytes() == b"same bytes"
    assert not unfinished(dest)
    (folder / "b.jpg").write_bytes(b"one")  # a different file at the target is never overwritten
    (dest / "b.jpg").write_bytes(b"two")
    with open(dest / JOURNAL, "a") as j:
        j.write(json.dumps({"move": str(folder / "b.jpg"), "to": str(dest / "b.jpg")}) + "\n")
    with pytest.raises(BadInputError):
        finish(dest)
    assert (folder / "b.jpg").read_bytes() == b"one" and (dest / "b.jpg").read_bytes() == b"two"


def test_move_never_overwrites_and_refuses_reference(tmp_path):
    a, b, dest = tmp_path / "a", tmp_path / "b", tmp_path / "dest"
    a.mkdir()
    b.mkdir()
    (a / "x.jpg").write_bytes(b"one")
    (b / "x.jpg").write_bytes(b"two")
    dest.mkdir()
    (dest / "a").mkdir()
    (dest / "a" / "x.jpg").write_bytes(b"already there")
    rep = move_files([str(a / "x.jpg"), str(b / "x.jpg")], dest, refuse_under=[str(b)])
    assert (b / "x.jpg").read_bytes() == b"two" and rep.skipped == [(str(b / "x.jpg"), "under a reference folder")]
    assert (dest / "a" / "x.jpg").read_bytes() == b"already there"
    assert [Path(d).read_bytes() for _, d in rep.moved] == [b"one"]


def test_alignment_stops_at_a_sure_score_and_keeps_its_decisions(monkeypatch):
    """A copy the hashes' turn already lines up is not matched by keypoints too; another shot
    still goes through every test and stays below the threshold."""
    from lookalike.features.local import copies

    a = scene(5)
    original = copies.prepare(a)
    again = copies.prepare(a.copy())
    monkeypatch.setattr(copies, "SURE", 0.9992)  # above the presets' threshold, as SURE must be
    same = copies.compare(original, again, "identity")
    assert same.score >= copies.SURE and same.how == "orientation" and same.inliers == 0
    turned = copies.prepare(np.ascontiguousarray(np.rot90(a)))
    for orientation in ("rot90", None):  # with the hashes' turn, and by keypoints alone
        assert copies.compare(original, turned, orientation).score >= dup.PRESETS["edited"]["threshold"]
    other = copies.compare(original, copies.prepare(scene(5, shift=(9, 6))), "identity")
    assert other.score < dup.PRESETS["edited"]["threshold"]


def _bannered(rgb: np.ndarray) -> np.ndarray:
    """A dark banner with a caption across a fifth of the picture (as copies for the web are marked)."""
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, int(im.height * 0.72), im.width, int(im.height * 0.9)], fill=(20, 20, 20))
    draw.text((8, int(im.height * 0.74)), "SUMMER HOLIDAYS 2008", fill=(255, 255, 0), font_size=26)
    return np.asarray(im)


def _photo_like(seed: int) -> np.ndarray:
    """The test scene with the muted colours of a photograph (the score of an exact copy of a
    vividly coloured block stays a little lower: the colour fit's ridge)."""
    return np.asarray(ImageEnhance.Color(Image.fromarray(scene(seed))).enhance(0.4))


def test_a_banner_over_a_fifth_of_the_picture_is_still_a_copy():
    """The banner's blocks disagree, more than a quarter of the textured ones: the score is their
    median, so the rest of the picture decides (the lower quartile refused this copy)."""
    from lookalike.features.local import copies

    a = _photo_like(7)
    original, bannered = copies.prepare(a), copies.prepare(_bannered(a))
    threshold = dup.PRESETS["edited"]["threshold"]
    for orientation in ("identity", None):  # with the hashes' turn, and by keypoints alone
        assert copies.compare(original, bannered, orientation).score >= threshold


def test_a_jpeg_quality_10_copy_is_still_a_copy():
    """JPEG's 8-pixel blocking at quality 10 is detected and blurred away before the blocks are
    compared (it kept such copies below the threshold)."""
    from lookalike.features.local import copies

    a = _photo_like(7)
    blocky = np.asarray(jpeg(Image.fromarray(a), 10))
    assert copies.blockiness(blocky) >= copies.BLOCKY > copies.blockiness(a)
    original, copy = copies.prepare(a), copies.prepare(blocky)
    assert copy.blocky and not original.blocky
    threshold = dup.PRESETS["edited"]["threshold"]
    for orientation in ("identity", None):
        assert copies.compare(original, copy, orientation).score >= threshold


def test_a_shot_with_things_moved_by_a_pixel_is_not_a_copy():
    """Another shot whose shapes moved by one or two pixels lines up closely but not as a copy
    does (the former score, 0.992 for the first, passed it)."""
    from lookalike.features.local import copies

    threshold = dup.PRESETS["edited"]["threshold"]
    for muted in (False, True):
        colours = (lambda x: np.asarray(ImageEnhance.Color(Image.fromarray(x)).enhance(0.4))) if muted else np.asarray
        original = copies.prepare(colours(scene(7)))
        for shift in ((1, 1), (2, 1), (3, 2)):
            other = copies.prepare(colours(scene(7, shift=shift)))
            for orientation in ("identity", None):
                assert copies.compare(original, other, orientation).score < threshold, (muted, shift)


def test_a_panned_view_is_not_a_copy(monkeypatch):
    """Two views of one scene, the camera turned sideways between them, agree pixel for pixel where
    they overlap, but neither frame lies inside the other, as a crop's or a framed copy's does."""
    from lookalike.features.local import copies

    wide = scene(11, size=(480, 240))
    left = copies.prepare(np.ascontiguousarray(wide[:, :320]))
    right = copies.prepare(np.ascontiguousarray(wide[:, 110:430]))
    threshold = dup.PRESETS["edited"]["threshold"]
    assert copies.compare(left, right).score < threshold
    monkeypatch.setattr(copies, "NESTED", 0.0)  # the overlap itself agrees as a copy's would
    assert copies.compare(left, right).score >= threshold
