"""Retrieval metrics with pessimistic tie handling: a tie never favours a relevant image."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def ranked_relevance(scores: np.ndarray, ids: Iterable[str], relevant: set[str], junk: set[str]) -> np.ndarray:
    """Relevance flags (bool) of the ranking by descending score, junk removed.

    Among equal scores the non-relevant items are put first (the pessimistic order).
    """
    ids = list(ids)
    keep = np.array([i not in junk for i in ids], bool)
    s = np.asarray(scores, np.float64)[keep]
    rel = np.array([i in relevant for i, k in zip(ids, keep) if k], bool)
    order = np.lexsort((rel, -s))  # primary: score desc; ties: non-relevant (False) first
    return rel[order]


def average_precision(rel: np.ndarray, n_relevant: int) -> float:
    if n_relevant == 0:
        return 0.0
    hits = np.cumsum(rel)
    ranks = np.nonzero(rel)[0] + 1
    return float((hits[rel] / ranks).sum() / n_relevant)


def precision_at(rel: np.ndarray, k: int) -> float:
    return float(rel[:k].sum() / k)


def recall_at(rel: np.ndarray, k: int, n_relevant: int) -> float:
    return float(rel[:k].sum() / n_relevant) if n_relevant else 0.0


def summarise(rels: list[np.ndarray], n_rels: list[int]) -> dict[str, float]:
    """mAP, P@1, P@10, R@1, R@5, R@10 averaged over queries."""
    def mean(f) -> float:
        return float(np.mean([f(r, n) for r, n in zip(rels, n_rels)])) if rels else 0.0

    return {
        "mAP": mean(average_precision),
        "P@1": mean(lambda r, n: precision_at(r, 1)),
        "P@10": mean(lambda r, n: precision_at(r, 10)),
        "R@1": mean(lambda r, n: recall_at(r, 1, n)),
        "R@5": mean(lambda r, n: recall_at(r, 5, n)),
        "R@10": mean(lambda r, n: recall_at(r, 10, n)),
    }
