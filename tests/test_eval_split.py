"""``lookalike eval --split``: the unseen-class and seen-class protocols pick their test parts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo
from lookalike.cli import app
from lookalike.errors import BadInputError
from lookalike.eval.dataset import Dataset
from lookalike.eval.runner import split_queries


def _dataset(root: Path) -> tuple[Dataset, Path]:
    ids = [f"{c}/{c}{i}" for c in ("a", "b", "c") for i in range(4)]
    gt = {"format": "lookalike-benchmark/1", "db": [{"id": d, "file": d + ".jpg"} for d in ids],
          "queries": [], "labels": {d: d.split("/")[0] for d in ids}}
    (root / "gt.json").write_text(json.dumps(gt))
    split = {"train_classes": ["a"], "test_classes": ["b", "c"],
             "train_images": [d for d in ids if int(d[-1]) % 2 == 0],
             "test_images": [d for d in ids if int(d[-1]) % 2 == 1]}
    (root / "split.json").write_text(json.dumps(split))
    return Dataset.load(root), root / "split.json"


def test_unseen_classes_protocol(tmp_path: Path) -> None:
    ds, split = _dataset(tmp_path)
    sub = split_queries(ds, split, "classes")
    assert sorted(sub.db_ids) == [f"{c}/{c}{i}" for c in "bc" for i in range(4)]
    assert len(sub.queries) == 8
    q = sub.queries[0]
    assert q.junk == ["b/b0"] and sorted(q.relevant) == ["b/b1", "b/b2", "b/b3"]


def test_seen_classes_protocol(tmp_path: Path) -> None:
    ds, split = _dataset(tmp_path)
    sub = split_queries(ds, split, "images")
    assert sorted(sub.db_ids) == ["a/a1", "a/a3", "b/b1", "b/b3", "c/c1", "c/c3"]
    assert len(sub.queries) == 6  # every test image queries the other test images
    by_image = {q.image.name: q for q in sub.queries}
    assert by_image["c1.jpg"].relevant == ["c/c3"] and by_image["c1.jpg"].junk == ["c/c1"]
    with pytest.raises(BadInputError):
        split_queries(ds, split, "pairs")


def test_eval_command_scores_the_seen_class_protocol(tmp_path: Path) -> None:
    """Through the command: the test images of every class (6 queries), with a clear error for
    an unknown protocol."""
    ds, split = _dataset(tmp_path)
    for k, d in enumerate(ds.db_ids):
        (tmp_path / "images" / d.split("/")[0]).mkdir(parents=True, exist_ok=True)
        base = synthetic_photo(7 + "abc".index(d[0]))  # one scene per class, shifted per image
        Image.fromarray(base[k % 4:k % 4 + 100, :]).save(tmp_path / "images" / (d + ".jpg"))
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(tmp_path), "--split", str(split), "--protocol", "images",
                            "--pipeline", "color", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["queries"] == 6 and res["mAP"] == 1.0
    bad = runner.invoke(app, ["eval", str(tmp_path), "--split", str(split), "--protocol", "pairs",
                              "--pipeline", "color"])
    assert bad.exit_code == 1 and "protocol" in bad.output
