"""Text search through the index: sources gathered at index time, ``Index.search(text=...)``,
``lookalike tag`` and removal."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import lookalike
from lookalike.cli import app


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("lake.jpg", "street.jpg", "party.jpg"):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(root / name)
    exif = Image.Exif()
    exif[0x010E] = "Lighthouse on the cliffs"
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(root / "coast.jpg", exif=exif)
    (root / "lake.jpg.txt").write_text("two kayaks near the jetty", encoding="utf-8")
    (root / "street.txt").write_text("夜晚的城市街道", encoding="utf-8")
    idx = lookalike.open(tmp_path_factory.mktemp("idx"), pipeline="text")
    rep = idx.add([root])
    assert rep.added == 4
    return idx, root


def first(idx, text: str) -> str:
    return idx.search(text=text, k=1).hits[0].path


def test_index_time_sources_are_searchable(indexed):
    idx, root = indexed
    assert first(idx, "kayaks") == str(root / "lake.jpg")  # sidecar caption
    assert first(idx, "lighthouse") == str(root / "coast.jpg")  # EXIF description
    assert first(idx, "城市街道") == str(root / "street.jpg")  # Chinese sidecar, trigram
    assert first(idx, "街") == str(root / "street.jpg")  # one character
    assert first(idx, "party") == str(root / "party.jpg")  # file name


def test_tag_command_and_removal(indexed):
    idx, root = indexed
    party = str(root / "party.jpg")
    res = CliRunner().invoke(app, ["tag", party, "--index", str(idx.dir), "--add", "生日", "--add", "balloons"])
    assert res.exit_code == 0, res.output
    assert first(idx, "balloons") == party
    assert first(idx, "生日") == party
    res = CliRunner().invoke(app, ["tag", party, "--index", str(idx.dir), "--json"])
    assert '"tag"' in res.output and "balloons" in res.output
    idx.remove([root / "lake.jpg"])
    assert all(h.path != str(root / "lake.jpg") for h in idx.search(text="kayaks", k=5).hits)


def test_captions_file_import(indexed, tmp_path):
    idx, root = indexed
    caps = tmp_path / "caps.csv"
    caps.write_text(f"path,caption\n{root / 'street.jpg'},a red tram at night\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["tag", "--index", str(idx.dir), "--captions", str(caps)])
    assert res.exit_code == 0, res.output
    assert "1 captions added" in res.output
    assert first(idx, "tram") == str(root / "street.jpg")


def test_trained_bridge_takes_descriptor_and_classes(tmp_path):
    """``tag --train-bridge`` learns from the index's captions; later images get bridge vectors too."""
    from lookalike.pipelines.text import TextExtension
    from lookalike.text.bridges import Bridges

    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(1)
    for k, caption in enumerate(("a red boat", "a snowy mountain", "a city street at night")):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(root / f"{k}.jpg")
        (root / f"{k}.jpg.txt").write_text(caption, encoding="utf-8")
    idx = lookalike.open(tmp_path / "idx", pipeline="text")
    idx.add([root])
    res = CliRunner().invoke(app, ["tag", "--index", str(idx.dir), "--train-bridge"])
    assert res.exit_code == 0, res.output
    bridges = Bridges.load(idx.dir)
    assert set(bridges.heads) == {"minilm", "use"} and bridges.config.class_inputs == 1000
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(root / "late.jpg")
    idx = lookalike.open(tmp_path / "idx")
    idx.add([root / "late.jpg"])
    ti = TextExtension.reader(idx.catalog.db)
    _, cov = ti.vector_scores("bridge", np.ones((1, 384), np.float32), ti.image_ids())
    assert cov.all() and len(cov) == 4
    _, cov = ti.vector_scores("bridge_use", np.ones((1, 512), np.float32), ti.image_ids())
    assert cov.all() and len(cov) == 4


def test_scores_are_readable_and_min_score_filters(indexed):
    """Text scores run 0–1; a nonsense query stays below the "no match" level and ``--min-score`` drops it."""
    import json

    from lookalike.text.scale import NO_MATCH

    idx, root = indexed
    hits = idx.search(text="lighthouse", k=4).hits
    assert hits[0].path == str(root / "coast.jpg") and 0.8 <= hits[0].score <= 1.0
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert max(h.score for h in idx.search(text="zzzqqq", k=4).hits) < NO_MATCH
    res = CliRunner().invoke(app, ["search", "--index", str(idx.dir), "--text", "zzzqqq", "--min-score",
                                   str(NO_MATCH), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["results"] == []
    res = CliRunner().invoke(app, ["search", "--index", str(idx.dir), "--text", "lighthouse", "--min-score", "0.5",
                                   "--json"])
    assert [r["path"] for r in json.loads(res.output)["results"]] == [str(root / "coast.jpg")]
