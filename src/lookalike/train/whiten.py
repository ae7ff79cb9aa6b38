"""Learned whitening from matching pairs (Radenović et al., "Lw"): the positive pairs' difference
covariance is whitened, then the whitened data's principal directions become the axes."""
from __future__ import annotations


import numpy as np

from lookalike.postprocess import LearnedWhitening  # noqa: F401  (the step this module's Lw fills)


def learn_whitening(x: np.ndarray, qi: np.ndarray, pi: np.ndarray, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), projection (D, D)) from descriptors ``x`` (N, D) and matching pairs (qi[k], pi[k])."""
    x = np.asarray(x, np.float64)
    mean = x[qi].mean(axis=0)
    diff = x[qi] - x[pi]
    s = diff.T @ diff / len(diff)
    s += eps * np.trace(s) / len(s) * np.eye(len(s))
    p = np.linalg.inv(np.linalg.cholesky(s))
    xw = (x - mean) @ p.T
    vals, vecs = np.linalg.eigh(xw.T @ xw)
    order = np.argsort(vals)[::-1]
    proj = p.T @ vecs[:, order]
    return mean.astype(np.float32), proj.astype(np.float32)


def positive_pairs(labels: np.ndarray, per_image: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_image`` random same-class partners for every image."""
    qi, pi = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        for i in idx:
            others = idx[idx != i]
            for j in rng.choice(others, min(per_image, len(others)), replace=False):
                qi.append(i)
                pi.append(j)
    return np.array(qi, np.int64), np.array(pi, np.int64)
