"""The command line: index, search, info, remove, pipelines, eval; errors are one line, not tracebacks."""
from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo
from lookalike.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_index_search_info_remove(photo_dir, tmp_path):
    idx = str(tmp_path / "idx")
    (photo_dir / "broken.jpg").write_text("not an image")
    r = run("index", str(photo_dir), "--index", idx, "--pipeline", "color", "--json", "--exclude", "img6*")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["added"] == 7 and rep["failed"][0]["path"].endswith("broken.jpg")
    r = run("search", str(photo_dir / "img2.jpg"), "--index", idx, "-k", "3", "--json")
    out = json.loads(r.stdout)
    assert out["results"][0]["path"].endswith("img2.jpg") and out["took_ms"] > 0
    r = run("search", str(photo_dir / "img2.jpg"), "--index", idx)
    assert "took" in r.stdout and "img2.jpg" in r.stdout
    info = json.loads(run("info", "--index", idx, "--json").stdout)
    assert info["images"] == 7 and info["pipeline"] == "color" and info["skipped"][0]["reason"]
    assert json.loads(run("remove", str(photo_dir / "img2.jpg"), "--index", idx, "--json").stdout)["removed"] == 1
    assert json.loads(run("info", "--index", idx, "--json").stdout)["images"] == 6


def test_bad_query_is_one_line_error(photo_dir, tmp_path):
    idx = str(tmp_path / "idx")
    run("index", str(photo_dir), "--index", idx, "--pipeline", "color", "--quiet")
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    r = run("search", str(bad), "--index", idx)
    assert r.exit_code != 0 and "Traceback" not in r.output and "bad.jpg" in r.output
    r = run("search", str(tmp_path / "missing.jpg"), "--index", idx)
    assert r.exit_code != 0 and "not found" in r.output
    r = run("search", "--text", "a cat", "--index", idx)
    assert r.exit_code != 0 and "not supported" in r.output
    r = run("search", str(photo_dir / "img1.jpg"), "--index", str(tmp_path / "nowhere"))
    assert r.exit_code != 0 and "no index" in r.output
    r = run("search", str(photo_dir / "img1.jpg"), "--index", idx, "--rerank", "nosuchstep")
    assert r.exit_code != 0 and "Traceback" not in r.output and "nosuchstep" in r.output


def test_search_with_rerank_steps_and_verification(photo_dir, tmp_path):
    idx = str(tmp_path / "idx")
    run("index", str(photo_dir), "--index", idx, "--pipeline", "color", "--quiet")
    for extra in (["--rerank", "diffusion"], ["--verify"], ["--verify", "--rerank", "aqe"]):
        r = run("search", str(photo_dir / "img4.jpg"), "--index", idx, "-k", "8", "--json", *extra)
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)["results"]
        assert res[0]["path"].endswith("img4.jpg") and len(res) == 8
    r = run("search", str(photo_dir / "img4.jpg"), "--index", idx, "-k", "8", "--json", "--verify")
    assert json.loads(r.stdout)["results"][0]["score"] > 1.0  # the exact copy got the inlier bonus


def test_pipelines_listed():
    r = run("pipelines", "--json")
    items = json.loads(r.stdout)
    names = {p["name"] for p in items}
    assert {"color", "default", "aqe", "dba", "krnn", "diffusion", "sv"} <= names
    assert {"default+aqe", "default+dba+aqe", "default+krnn", "default+diffusion", "default+sv"} <= names
    assert all(p["description"] for p in items)


def test_help_on_every_command():
    for cmd in ("index", "search", "remove", "info", "pipelines", "eval"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.output


def test_eval_on_a_small_dataset(tmp_path):
    """A tiny benchmark-format dataset: each query is a crop of one db image."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "queries").mkdir()
    db, queries = [], []
    for i in range(6):
        arr = synthetic_photo(100 + i)
        Image.fromarray(arr).save(root / "images" / f"{i}.jpg")
        Image.fromarray(arr[10:-10, 10:-10]).save(root / "queries" / f"{i}.jpg")
        db.append({"id": str(i), "file": f"{i}.jpg"})
        queries.append({"image": f"queries/{i}.jpg", "relevant": [str(i)], "junk": []})
    (root / "gt.json").write_text(json.dumps({"format": "lookalike-benchmark/1", "name": "tiny", "task": "image",
                                              "db_dir": "images", "db": db, "queries": queries}))
    r = run("eval", str(root), "--pipeline", "color", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res) == {"mAP", "mAP_trapezoid", "P@1", "P@10", "R@1", "R@5", "R@10", "queries", "images_per_s",
                        "query_ms_p50"}
    assert res["queries"] == 6 and res["mAP"] == 1.0 and res["R@1"] == 1.0
