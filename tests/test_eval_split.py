"""``lookalike eval --split``: the unseen-class and seen-class protocols pick their test parts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

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
