"""``lookalike search`` output formats, pages, filters and composed queries."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.api import Index
from lookalike.cli import app
from test_filters import CAMERAS, N, expected, make_collection, spec

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    coll = make_collection(root / "photos")
    ix = Index(root / "idx", "color")
    ix.add([coll])
    ix.close()
    return str(root / "idx"), coll


def run(*args: str):
    r = runner.invoke(app, list(args))
    return r


def test_formats_print_the_same_ranking(setup):
    idx, coll = setup
    q = str(coll / spec(4)["name"])
    want = json.loads(run("search", q, "--index", idx, "-k", "5", "--json").stdout)["results"]
    paths = run("search", q, "--index", idx, "-k", "5", "--format", "paths")
    assert paths.exit_code == 0 and paths.stdout.splitlines() == [h["path"] for h in want]
    lines = run("search", q, "--index", idx, "-k", "5", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(x) for x in lines] == want
    rows = list(csv.DictReader(io.StringIO(run("search", q, "--index", idx, "-k", "5", "-f", "csv").stdout)))
    assert [r["path"] for r in rows] == [h["path"] for h in want] and rows[0]["rank"] == "1"
    assert rows[0]["width"] == str(want[0]["width"]) and rows[0]["taken"] == want[0]["taken"]
    assert set(rows[0]) == {"rank", "score", "id", "path", "width", "height", "taken", "camera", "type"}
    bad = run("search", q, "--index", idx, "--format", "xml")
    assert bad.exit_code == 1 and "--format" in bad.output


def test_offset_and_filters_through_the_command(setup):
    idx, coll = setup
    q = str(coll / spec(4)["name"])
    whole = run("search", q, "--index", idx, "-k", "8", "-f", "paths").stdout.splitlines()
    assert run("search", q, "--index", idx, "-k", "3", "--offset", "2", "-f", "paths").stdout.splitlines() == whole[2:5]
    got = run("search", q, "--index", idx, "-k", str(N), "-f", "paths", "--camera", "nikon", "--type", "jpg",
              "--folder", str(coll / "a"), "--date-from", "2020-01-01", "--date-to", "2022-12-31").stdout
    want = expected(lambda s: s["camera"] == CAMERAS[1] and s["folder"].startswith("a"))
    assert {Path(p).name for p in got.splitlines()} == want and want
    got = run("search", q, "--index", idx, "-k", str(N), "-f", "paths", "--min-width", "300",
              "--max-height", "300").stdout
    assert {Path(p).name for p in got.splitlines()} == expected(lambda s: s["size"] == (320, 240))
    bad = run("search", q, "--index", idx, "--date-from", "03/04/2021")
    assert bad.exit_code == 1 and "YYYY-MM-DD" in bad.output


def test_composed_queries_through_the_command(setup):
    idx, coll = setup
    a, b = str(coll / spec(4)["name"]), str(coll / spec(9)["name"])
    one = run("search", "--index", idx, "-q", f"{a} - 0.5:{b}", "-k", "3", "-f", "paths")
    assert one.exit_code == 0, one.output
    two = run("search", a, "--index", idx, "--unlike", f"0.5:{b}", "-k", "3", "-f", "paths")
    assert one.stdout == two.stdout and one.stdout.splitlines()[0] == a and b not in one.stdout
    like = run("search", "--index", idx, "--like", a, "--like", b, "-k", "2", "-f", "paths").stdout.splitlines()
    assert set(like) == {a, b}
    r = run("search", "--index", idx, "-q", f"{a} - {b}", "--box", "0,0,10,10")
    assert r.exit_code == 1 and "composed" in r.output
