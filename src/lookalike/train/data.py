"""Training data: (image path, class label) pairs read from a class-folder tree, a benchmark
dataset with ``labels`` in its ``gt.json``, or a CSV of matching / non-matching pairs."""
from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from lookalike.io import is_image_name


@dataclass
class Labelled:
    """Image paths with one class label each (same label = matching images)."""

    paths: list[Path]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def subset(self, classes: set[str]) -> "Labelled":
        keep = [i for i, c in enumerate(self.labels) if c in classes]
        return Labelled([self.paths[i] for i in keep], [self.labels[i] for i in keep])

    def cap(self, per_class: int | None, seed: int = 0) -> "Labelled":
        """At most ``per_class`` images of each class (a fixed random choice)."""
        if not per_class:
            return self
        rng = random.Random(seed)
        by: dict[str, list[int]] = {}
        for i, c in enumerate(self.labels):
            by.setdefault(c, []).append(i)
        keep = sorted(i for idx in by.values() for i in (rng.sample(idx, per_class) if len(idx) > per_class else idx))
        return Labelled([self.paths[i] for i in keep], [self.labels[i] for i in keep])


def read_labelled(data: str | Path) -> Labelled:
    """Labelled images from a folder of class subfolders, a benchmark dataset, or a pairs CSV."""
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        return _from_pairs_csv(data)
    if (data / "gt.json").exists():
        return _from_benchmark(data)
    if data.is_dir():
        return _from_folders(data)
    raise FileNotFoundError(f"{data}: not a folder of class subfolders, a dataset with gt.json, or a .csv")


def _from_folders(root: Path) -> Labelled:
    paths, labels = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(sub.rglob("*")):
            if f.is_file() and is_image_name(f):
                paths.append(f)
                labels.append(sub.name)
    if not paths:
        raise ValueError(f"{root}: no images in class subfolders")
    return Labelled(paths, labels)


def _from_benchmark(root: Path) -> Labelled:
    gt = json.loads((root / "gt.json").read_text())
    labels = gt.get("labels") or {}
    if not labels:
        raise ValueError(f"{root / 'gt.json'}: no 'labels' (db id -> class) to train on")
    db_dir = root / gt.get("db_dir", "images")
    rows = [(db_dir / d["file"], labels[d["id"]]) for d in gt["db"] if d["id"] in labels]
    return Labelled([p for p, _ in rows], [c for _, c in rows])


def _from_pairs_csv(path: Path) -> Labelled:
    """Rows ``image_a,image_b,match`` (match 1/0; relative paths are relative to the CSV).

    Matching pairs are joined into groups (connected components), and each group is one class;
    images in different groups count as non-matching.
    """
    parent: dict[Path, Path] = {}

    def find(x: Path) -> Path:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 3 or row[2].strip().lower() in ("match", "label", "same"):
                continue  # header or short row
            a, b = ((path.parent / r.strip()).resolve() for r in row[:2])
            for x in (a, b):
                parent.setdefault(x, x)
            if row[2].strip().lower() in ("1", "true", "yes", "match"):
                parent[find(a)] = find(b)
    if not parent:
        raise ValueError(f"{path}: no pairs")
    paths = sorted(parent)
    return Labelled(paths, [str(find(p)) for p in paths])


def split_classes(classes: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training classes, held-out validation classes); the validation part is class-disjoint and,
    when there is one, holds at least 2 classes (one class alone would rank nothing against anything)."""
    rng = random.Random(seed)
    shuffled = sorted(classes)
    rng.shuffle(shuffled)
    n_val = min(len(classes) - 2, max(2, round(len(classes) * val_fraction))) if val_fraction > 0 else 0
    n_val = max(n_val, 0)
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def split_images(labels: list[str], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(training rows, validation rows): ``val_fraction`` of every class's images held out (at
    least 2 where the class has 4 or more, so each validation image has a match), the rest trained on."""
    rng = random.Random(seed)
    by: dict[str, list[int]] = {}
    for i, c in enumerate(labels):
        by.setdefault(c, []).append(i)
    train, val = [], []
    for c in sorted(by):
        idx = by[c][:]
        rng.shuffle(idx)
        n_val = max(2, round(len(idx) * val_fraction)) if val_fraction > 0 and len(idx) >= 4 else 0
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)


PROTOCOLS = ("classes", "images")  # unseen classes (train_classes / test_classes); seen classes, new images


def train_classes_of(split_file: str | Path) -> set[str]:
    """The training class names of a ``split.json`` (``train_classes`` or ``train``)."""
    split = json.loads(Path(split_file).read_text())
    names = split.get("train_classes") or split.get("train") or []
    if not names:
        raise ValueError(f"{split_file}: no 'train_classes' list")
    return set(names)


def restrict_to_split(items: Labelled, data: str | Path, split_file: str | Path, protocol: str) -> Labelled:
    """The training part of a split: its ``train_classes`` (protocol ``classes``) or its
    ``train_images`` (protocol ``images``, image ids of the dataset's ``gt.json``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if protocol == "classes":
        return items.subset(train_classes_of(split_file))
    ids = set(json.loads(Path(split_file).read_text()).get("train_images") or [])
    if not ids:
        raise ValueError(f"{split_file}: no 'train_images' list")
    gt_file = Path(data) / "gt.json"
    if not gt_file.exists():
        raise ValueError(f"{data}: protocol 'images' needs a dataset with gt.json")
    gt = json.loads(gt_file.read_text())
    db_dir = Path(data) / gt.get("db_dir", "images")
    keep = {db_dir / d["file"] for d in gt["db"] if d["id"] in ids}
    rows = [i for i, p in enumerate(items.paths) if p in keep]
    return Labelled([items.paths[i] for i in rows], [items.labels[i] for i in rows])
