"""How much can a learned map on the off-the-shelf descriptors gain on caltech101_97's unseen classes?

Reads the shared ``gem`` descriptors (``bench/gem_feats.py``) and reports mAP (each image
queries the others of its set, same class = relevant):

- off-the-shelf, on the test classes;
- a linear head (cosine-softmax over class proxies) or supervised whitening learned on the TRAIN
  classes, applied to the test classes: what fine-tuning a head transfers;
- an oracle: the same head learned on half of each TEST class's images, scored on the other half
  (against off-the-shelf on that half): a ceiling no train-class model can be expected to pass.

    PYTHONPATH=src:bench python bench/train_ceiling.py ../shared/datasets/caltech101_97 \\
        --split ../shared/datasets/caltech101_97/split.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import gem_feats
from lookalike.eval.dataset import Dataset
from lookalike.vectors import l2n
from lookalike.train.whiten import learn_whitening, positive_pairs


def class_map(x: np.ndarray, labels: np.ndarray) -> float:
    """mAP with every row querying all the others."""
    x = l2n(np.asarray(x, np.float32))
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    aps = []
    for i in range(len(x)):
        rel = labels[np.argsort(-s[i])[:-1]] == labels[i]
        if rel.any():
            hits = np.cumsum(rel)
            aps.append(float((hits[rel] / (np.flatnonzero(rel) + 1)).mean()))
    return round(float(np.mean(aps)), 4)


def proxy_head(x: np.ndarray, labels: np.ndarray, dim: int = 256, epochs: int = 200, scale: float = 16.0):
    """A linear map trained with a cosine softmax over one learned proxy per class."""
    import torch

    torch.manual_seed(0)
    y = torch.tensor(np.unique(labels, return_inverse=True)[1])
    xt = torch.tensor(l2n(x.astype(np.float32)))
    w = torch.nn.Linear(x.shape[1], dim, bias=False)
    proxies = torch.nn.Parameter(torch.randn(int(y.max()) + 1, dim) * 0.1)
    opt = torch.optim.Adam([*w.parameters(), proxies], lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        z = torch.nn.functional.normalize(w(xt), dim=1)
        logits = scale * z @ torch.nn.functional.normalize(proxies, dim=1).T
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda v: w(torch.tensor(l2n(v.astype(np.float32)))).detach().numpy()


def whitening(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    qi, pi = positive_pairs(np.unique(labels, return_inverse=True)[1], 5, rng)
    mean, proj = learn_whitening(x, qi, pi)
    return lambda v: (v - mean) @ proj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--split", type=Path, required=True)
    args = ap.parse_args()
    ds = Dataset.load(args.dataset)
    split = json.loads(args.split.read_text())
    z = gem_feats.load(ds)
    x = z["vectors"].astype(np.float64)
    labels = np.array([ds.labels[str(i)] for i in z["ids"]])
    train, test = np.isin(labels, split["train_classes"]), np.isin(labels, split["test_classes"])
    rng = np.random.default_rng(0)
    half = np.zeros(len(labels), bool)
    for c in np.unique(labels[test]):
        idx = np.flatnonzero((labels == c) & test)
        rng.shuffle(idx)
        half[idx[:len(idx) // 2]] = True
    held = test & ~half
    out = {
        "test_off_the_shelf": class_map(x[test], labels[test]),
        "test_head_from_train_classes": class_map(proxy_head(x[train], labels[train])(x[test]), labels[test]),
        "test_whitening_from_train_classes": class_map(whitening(x[train], labels[train], rng)(x[test]),
                                                       labels[test]),
        "held_half_off_the_shelf": class_map(x[held], labels[held]),
        "held_half_oracle_head_from_test_classes": class_map(proxy_head(x[half], labels[half])(x[held]),
                                                             labels[held]),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
