"""Text scores a person can read: 0 to 1, with NO_MATCH below which a hit is not a match.

The ranking comes from the fused score (``fusion``: per-query z-scores), which says how an image
compares with the other images for this query but not whether the query matches anything at all.
The readable score keeps that order and puts it on an absolute scale:

    score(image) = strength(query) · exp((fused(image) − fused(best)) / Σ weights)

* ``strength`` (0..1) is the query's best absolute evidence over its methods: a keyword hit
  (``KEYWORD_HIT``); for semantic, bridge and CLIP the best raw cosine, and for zero-shot the
  query's best cosine with a class embedding, each mapped linearly from its "unrelated" level
  (→ 0) to its "typical match" level (→ 1) in ``LEVELS``;
* the second factor is 1 for the best image and falls by e for each standard deviation (all
  methods together) below it.

So the best hit of a query shows how well the query matches at all, and the others are scaled
from there. ``NO_MATCH`` = 0.3: a query that matches nothing (e.g. "zzzqqq") scores below it;
``--min-score`` / ``min_score`` drops hits below a level. LEVELS were measured on flickr8k_1k
(English) and flickr8k_1k_zh captions against nonsense strings (BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

NO_MATCH = 0.3
KEYWORD_HIT = 0.9
# (unrelated level, typical match level) of the raw score, per part
LEVELS: dict[str, tuple[float, float]] = {
    # lo: at or above the best score of 15 (MiniLM) or 21 (USE, 6 of them Chinese) nonsense strings
    # ("zzzqqq", "qwxv blorp", "鑫龘齉", ...); hi: about the median best score of real captions;
    # measured on flickr8k_1k / flickr8k_1k_zh by bench/text_score_levels.py --bridge
    "zeroshot:minilm": (0.33, 0.60),  # query · class embedding: nonsense ≤ 0.32, captions median 0.41
    "zeroshot:use": (0.49, 0.70),  # nonsense ≤ 0.481: a weak signal in USE, captions median 0.38–0.44
    "semantic:minilm": (0.32, 0.70),  # best query · caption: nonsense ≤ 0.311, same image median 0.73
    "semantic:use": (0.50, 0.80),  # nonsense ≤ 0.491, same image median 0.70 (en) / 0.79 (zh)
    "bridge:minilm": (0.26, 0.45),  # query · bridged image (200): nonsense ≤ 0.26, best median 0.40
    "bridge:use": (0.20, 0.42),  # nonsense ≤ 0.17, best median 0.41
    "clip": (0.15, 0.30),  # not measured (no CLIP weights installable here): typical CLIP cosines
}


def level(raw: np.ndarray, part: str) -> np.ndarray:
    lo, hi = LEVELS.get(part, LEVELS.get(part.split(":")[0], (0.0, 1.0)))
    return np.clip((np.asarray(raw, np.float64) - lo) / (hi - lo), 0.0, 1.0)


def strength(parts: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
             evidence: Mapping[str, np.ndarray]) -> np.ndarray:
    """(Q,) the best absolute evidence of each query over the parts (see the module docstring)."""
    out: np.ndarray | None = None
    for name, (scores, covered) in parts.items():
        s = np.atleast_2d(np.asarray(scores, np.float64))
        if name == "keyword":
            e = np.where(s.max(axis=1) > 0, KEYWORD_HIT, 0.0)
        elif name in evidence:
            e = level(evidence[name], name)
        else:
            cov = np.ones(s.shape[1], bool) if covered is None else np.asarray(covered, bool)
            best = np.where(cov[None, :], s, -np.inf).max(axis=1) if cov.any() else np.full(len(s), -np.inf)
            e = level(best, name)
        out = e if out is None else np.maximum(out, e)
    return np.zeros(0) if out is None else out


def readable(fused: np.ndarray, parts: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
             evidence: Mapping[str, np.ndarray], weight_sum: float) -> np.ndarray:
    """(Q, N) scores in [0, 1], in the order of ``fused``."""
    f = np.atleast_2d(np.asarray(fused, np.float64))
    if not f.size:
        return f
    rel = np.exp((f - f.max(axis=1, keepdims=True)) / max(weight_sum, 1e-9))
    return strength(parts, evidence)[:, None] * rel
