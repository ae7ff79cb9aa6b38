"""Score fusion for text search.

Each method gives a score per image for one query. Dense scores (semantic, zero-shot, bridge,
CLIP) are standardised per query over the images they cover (z-scores; uncovered images get the
lowest covered z); the zero-shot score, a probability overlap, is standardised as
``log(score + LOG_EPS)`` so that it adds like a log-likelihood. Keyword scores (bm25, sparse) are
divided by the query's best keyword score, so an exact hit adds up to its weight. The hybrid score
is the weighted sum:

    hybrid = Σ_m  w_m · norm_m(score_m)      (defaults in ``DEFAULT_WEIGHTS``)

so one standard deviation of a dense score counts as much as ``1 / w_keyword`` of the best exact
keyword hit. A part named ``"method:space"`` (e.g. "bridge:use") is weighted as its method, the
method's weight shared evenly among its parts.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

DEFAULT_WEIGHTS: dict[str, float] = {"keyword": 3.0, "semantic": 1.0, "zeroshot": 0.75, "bridge": 4.0, "clip": 2.0}
SPARSE = {"keyword"}
# bridge parts ranked by cosine minus this times the image's hubness (``bridge.TextBridge.hubness``):
# chosen on validation splits inside the first 800 flickr8k_1k_zh images
HUB_PENALTY: dict[str, float] = {"bridge:use": 0.5}
LOG_EPS = {"zeroshot": 1e-3}  # methods fused on a log scale, with their floor


def standardise(scores: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
    """Row-wise z-scores of (Q, N) ``scores`` over the ``covered`` columns (others: the row's minimum)."""
    s = np.atleast_2d(np.asarray(scores, np.float64))
    cov = np.ones(s.shape, bool) if covered is None else np.broadcast_to(np.asarray(covered, bool), s.shape)
    out = np.zeros_like(s)
    for i in range(len(s)):
        c = cov[i]
        if not c.any():
            continue
        v = s[i, c]
        sd = v.std()
        z = (v - v.mean()) / sd if sd > 1e-12 else np.zeros_like(v)
        out[i, c] = z
        out[i, ~c] = z.min()
    return out


def scale_sparse(scores: np.ndarray) -> np.ndarray:
    """Row-wise division by the row maximum (rows without a positive score stay 0)."""
    s = np.atleast_2d(np.asarray(scores, np.float64))
    m = s.max(axis=1, keepdims=True)
    return np.where(m > 0, s / np.where(m > 0, m, 1.0), 0.0)


def part_weights(components: Mapping[str, object], weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """The weight of each part: its own entry in ``weights``, else its method's weight shared
    evenly among that method's parts."""
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    bases = [n.split(":")[0] for n in components]
    return {n: float(w[n]) if n in w and ":" in n else float(w.get(b, 0.0)) / bases.count(b)
            for n, b in zip(components, bases)}


def fuse(components: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
         weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Weighted sum of normalised scores; ``components[name] = (scores (Q, N), covered or None)``."""
    w = part_weights(components, weights)
    total: np.ndarray | None = None
    for name, (scores, covered) in components.items():
        base = name.split(":")[0]
        if w.get(name, 0.0) == 0.0:
            continue
        if base in LOG_EPS:
            scores = np.log(np.maximum(scores, 0.0) + LOG_EPS[base])
        part = scale_sparse(scores) if base in SPARSE else standardise(scores, covered)
        total = w[name] * part if total is None else total + w[name] * part
    if total is None:
        first = next(iter(components.values()))[0]
        return np.zeros(np.atleast_2d(first).shape)
    return total
