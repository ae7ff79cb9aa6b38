"""Batches for in-batch hard-negative mining: P classes × K images, so that every batch holds
positives for each image and negatives from the other classes, scored all against all."""
from __future__ import annotations

import numpy as np


def pk_batches(labels: np.ndarray, per_class: int, classes_per_batch: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches over every image of a class with at least 2 images.

    Each class's images are shuffled and cut into groups of ``per_class`` (a short last group is
    topped up with images drawn again); the groups are shuffled and ``classes_per_batch`` groups
    of different classes make a batch.
    """
    groups: list[tuple[int, np.ndarray]] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 2:
            continue
        k = min(per_class, len(idx))
        for s in range(0, len(idx), k):
            g = idx[s:s + k]
            if len(g) < k:
                g = np.concatenate([g, rng.choice(idx[:s], k - len(g), replace=False)])
            groups.append((int(c), g))
    order = rng.permutation(len(groups))
    pending = [groups[i] for i in order]
    batches: list[np.ndarray] = []
    while pending:
        batch, used, rest = [], set(), []
        for c, g in pending:
            if c not in used and len(used) < classes_per_batch:
                batch.append(g)
                used.add(c)
            else:
                rest.append((c, g))
        if len(used) < 2 and batches:  # a lone class has no negatives: fold it into the last batch
            batches[-1] = np.concatenate([batches[-1], *batch])
        else:
            batches.append(np.concatenate(batch))
        pending = rest
    return batches


def hardest(dist, same):
    """Per row: the farthest positive and the nearest negative distance (torch tensors)."""
    import torch

    eye = torch.eye(len(dist), dtype=torch.bool)
    pos = same & ~eye
    far_pos = torch.where(pos, dist, torch.full_like(dist, -1.0)).max(dim=1).values
    near_neg = torch.where(~same, dist, torch.full_like(dist, 1e9)).min(dim=1).values
    keep = pos.any(dim=1) & (~same).any(dim=1)
    return far_pos[keep], near_neg[keep]
