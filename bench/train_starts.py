"""The untrained starts of ``lookalike train``, judged as it judges them and scored on the test classes.

For a split's unseen-class protocol: every image described by off-the-shelf GeM (one view, and the
mean of its four quarter turns, ``DeepExtractor(turns=True)``), then for each start (the identity,
or Lw learned from same-class pairs at each ridge) the mAP of

- cross-validation inside the training classes (two halves of the classes, each fitting the
  whitening that the other scores; the mean), which is what selection may look at, and
- the test classes with the whitening fitted on all training classes, which it may not.

    PYTHONPATH=src python bench/train_starts.py ../shared/datasets/ucmerced16 \\
        --split ../shared/datasets/ucmerced16/split.json [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lookalike.features.deep import DeepExtractor
from lookalike.train.loop import leave_one_out_map
from lookalike.train.whiten import learn_whitening, positive_pairs
from lookalike.vectors import l2n

RIDGES = (0.001, 0.1, 1.0, 10.0, 100.0)


def read(root: Path, split: Path) -> tuple[list[Path], np.ndarray, list[str], list[str]]:
    gt = json.loads((root / "gt.json").read_text())
    sp = json.loads(split.read_text())
    ids = sorted(gt["labels"])
    paths = [next((root / "images").glob(i + ".*")) for i in ids]
    return paths, np.array([gt["labels"][i] for i in ids]), sp["train_classes"], sp["test_classes"]


def whiten(d: np.ndarray, fit: np.ndarray, labels: np.ndarray, ridge: float | None) -> np.ndarray:
    """``d`` whitened by Lw fitted on rows ``fit`` (None: unchanged)."""
    if ridge is None:
        return d
    lab = np.unique(labels[fit], return_inverse=True)[1]
    qi, pi = positive_pairs(lab, 10, np.random.default_rng(0))
    mean, proj = learn_whitening(d[fit], qi, pi, eps=ridge)
    return l2n((d - mean) @ proj)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    paths, labels, train, test = read(args.data, args.split)
    halves = [np.isin(labels, sorted(train)[0::2]), np.isin(labels, sorted(train)[1::2])]
    tr, te = np.isin(labels, train), np.isin(labels, test)
    rows = []
    for turns in (False, True):
        d = DeepExtractor(aggregator="gem", max_side=352, turns=turns).describe_paths(paths)
        for ridge in (None, *RIDGES):
            cv = [leave_one_out_map(whiten(d, a, labels, ridge)[b], labels[b])[0]
                  for a, b in ((halves[0], halves[1]), (halves[1], halves[0]))]
            w = whiten(d, tr, labels, ridge)
            rows.append({"turns": turns, "start": "identity" if ridge is None else f"lw {ridge:g}",
                         "cross_validated": round(float(np.mean(cv)), 4),
                         "test": round(leave_one_out_map(w[te], labels[te])[0], 4)})
            print(f"{'turns' if turns else 'one view':8s} {rows[-1]['start']:9s} "
                  f"cross-validated {rows[-1]['cross_validated']:.4f}  test {rows[-1]['test']:.4f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
