"""Watch mode: a watched folder and its index stay in step (bounded in time)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from conftest import synthetic_photo
from lookalike.engine.thumbs import ThumbStore
from lookalike.engine.watch import Watcher

SRC = Path(__file__).resolve().parents[1] / "src"
SETTLE_S = 10.0  # the index must hold what is on disk this soon after the last change


def on_disk(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*.jpg") if p.is_file()}


def in_index(ix) -> dict[str, str]:
    rows = ix.catalog.db.execute("SELECT path, hash FROM images WHERE status='ok'").fetchall()
    return dict(rows)


def settled(ix, folder: Path, deadline: float) -> float:
    """Seconds until the index holds exactly the files on disk (paths, content, vectors)."""
    t0 = time.monotonic()
    while True:
        want = on_disk(folder)
        if in_index(ix) == want and len(ix.store) == len(want) and ix.catalog.counts()["error"] == 0:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            missing = set(want) - set(in_index(ix))
            extra = set(in_index(ix)) - set(want)
            changed = {p for p in set(want) & set(in_index(ix)) if want[p] != in_index(ix)[p]}
            pytest.fail(f"not in step after {SETTLE_S} s: missing {sorted(missing)[:3]} ({len(missing)}), "
                        f"extra {sorted(extra)[:3]} ({len(extra)}), changed {len(changed)}, "
                        f"vectors {len(ix.store)}, errors {ix.catalog.errors()[:3]}")
        time.sleep(0.1)


def test_overlapping_paths_index_each_file_once(photo_dir, tmp_path):
    """A folder moved in is synced as the folder and as its files: each file once."""
    with lookalike.open(tmp_path / "idx", pipeline="color") as ix:
        rep = ix.add([photo_dir, photo_dir / "sub", photo_dir / "sub" / "img7.jpg"])
        assert (rep.added, rep.updated, len(ix.store)) == (8, 0, 8)
        assert sorted(ix.store.ids().tolist()) == sorted(ix.catalog.ok_ids().tolist())


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    src = tmp_path / "sources"
    src.mkdir()
    for i in range(105):
        Image.fromarray(synthetic_photo(1000 + i, size=(96, 72))).save(src / f"s{i:03d}.jpg", quality=90)
    return src


def test_copy_move_delete_change_then_in_step_within_seconds(sources, tmp_path):
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    ix = lookalike.open(tmp_path / "idx", pipeline="color")
    watcher = Watcher(ix, photos, debounce=0.5, max_delay=5.0, rescan_every=3600).start()
    try:
        assert watcher.ready.wait(30)

        def where(i: int) -> Path:
            return photos / ("a" if i % 4 == 0 else "") / f"p{i:03d}.jpg"

        for i in range(100):  # copy 100 in (some into a subfolder)
            shutil.copy(sources / f"s{i:03d}.jpg", where(i))
        (photos / "b").mkdir()
        for i in range(1, 11):  # move 10: renamed in place, or into another folder
            os.rename(where(i), photos / ("b" if i % 2 else "") / f"moved{i:03d}.jpg")
        for i in range(21, 41, 2):  # delete 10
            os.unlink(where(i))
        for i, j in zip(range(42, 52, 2), range(100, 105)):  # change 5 (new content, same name)
            shutil.copy(sources / f"s{j:03d}.jpg", where(i))
        last_change = time.monotonic()
        took = settled(ix, photos, last_change + SETTLE_S)
        assert len(on_disk(photos)) == 90
        print(f"in step {took:.2f} s after the last change")
        # moved files kept their vectors, changed ones were described again; thumbnails follow
        assert set(ThumbStore(tmp_path / "idx" / "thumbs.sqlite", readonly=True).digests()) == set(on_disk(photos).values())
        hit = ix.search(where(42), k=1).hits[0]
        assert hit.path == str(where(42)) and hit.score == pytest.approx(1.0, abs=1e-4)

        shutil.rmtree(photos / "b")  # a folder deleted, another moved in from outside, one renamed
        shutil.copytree(sources, tmp_path / "outside")
        for p in list((tmp_path / "outside").glob("*.jpg"))[5:]:
            p.unlink()
        os.rename(tmp_path / "outside", photos / "came")
        os.rename(photos / "a", photos / "renamed")
        settled(ix, photos, time.monotonic() + SETTLE_S)
        assert sum(p.startswith(str(photos / "renamed") + os.sep) for p in in_index(ix)) == 23  # 25, 2 moved out
    finally:
        watcher.stop()
        ix.close()
    assert watcher.writes >= 2


def test_changes_while_not_watching_are_found_by_the_first_rescan(sources, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        shutil.copy(sources / f"s{i:03d}.jpg", photos / f"p{i}.jpg")
    with lookalike.open(tmp_path / "idx", pipeline="color") as ix:
        ix.add(photos)
    (photos / "p0.jpg").unlink()
    shutil.copy(sources / "s010.jpg", photos / "new.jpg")
    (photos / "notes.txt").write_text("not an image")
    with lookalike.open(tmp_path / "idx") as ix:
        watcher = Watcher(ix, photos, debounce=0.2).start()
        try:
            assert watcher.ready.wait(30)
            assert in_index(ix) == on_disk(photos)
            (photos / "more.txt").write_text("still not an image")
            shutil.copy(sources / "s011.jpg", photos / "p9.jpg")
            settled(ix, photos, time.monotonic() + SETTLE_S)
        finally:
            watcher.stop()


def _ctrl_c_enabled() -> None:
    """In the child: Ctrl-C at its default, whatever the test runner inherited (a shell's
    background job starts with SIGINT ignored, and an ignored SIGINT stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_index_watch_command_stops_cleanly_on_ctrl_c(sources, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sources / "s000.jpg", photos / "first.jpg")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", "from lookalike.cli import main; main()", "index", str(photos),
                             "--index", str(tmp_path / "idx"), "-p", "color", "--watch", "--debounce", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_ctrl_c_enabled)
    lines = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("watching"):
                break
        assert any(line.startswith("watching") for line in lines), "".join(lines)
        shutil.copy(sources / "s001.jpg", photos / "second.jpg")
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if re.search(r"added 1\b", line):
                break
        assert any(re.search(r"added 1\b", line) for line in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + out
    assert "stopped watching" in out
    with lookalike.open(tmp_path / "idx", readonly=True) as ix:
        assert sorted(Path(p).name for p in in_index(ix)) == ["first.jpg", "second.jpg"] and len(ix) == 2


def test_serve_watch_keeps_the_served_index_in_step(sources, tmp_path, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from lookalike.cli import app

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sources / "s000.jpg", photos / "first.jpg")
    with lookalike.open(tmp_path / "idx", pipeline="color") as ix:
        ix.add(photos)
    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(app=application))
    r = CliRunner().invoke(app, ["serve", "--index", str(tmp_path / "idx"), "--watch", str(photos),
                                 "--debounce", "0.2", "--exclude", "*.skip.jpg"])
    assert r.exit_code == 0 and f"watching {photos}" in r.output, r.output
    r = CliRunner().invoke(app, ["serve", "--index", str(tmp_path / "idx"), "--watch", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "no such folder to watch" in r.output
    with TestClient(seen["app"]) as c:
        watcher = c.app.state.watcher
        assert watcher.ready.wait(30)
        shutil.copy(sources / "s001.jpg", photos / "second.jpg")
        shutil.copy(sources / "s002.jpg", photos / "third.skip.jpg")
        (photos / "first.jpg").unlink()
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            items = c.get("/images").json()["items"]
            if [it["path"] for it in items] == ["second.jpg"]:
                break
            time.sleep(0.1)
        assert [it["path"] for it in items] == ["second.jpg"]
        assert c.get(items[0]["thumb"]).status_code == 200
    assert not watcher.running  # stopped with the server
