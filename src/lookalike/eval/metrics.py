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


def average_precision_trapezoid(rel: np.ndarray, n_relevant: int) -> float:
    """AP by the trapezoid rule of the official Holidays script and revisitop's ``compute_ap``:
    with the j-th hit (from 0) at rank r_j (from 0), AP = (1/n) sum_j 1/2 (j/r_j + (j+1)/(r_j+1)),
    j/r_j taken as 1 when r_j = 0. It gives lower figures than ``average_precision``."""
    if n_relevant == 0:
        return 0.0
    ranks = np.nonzero(rel)[0].astype(np.float64)
    j = np.arange(len(ranks), dtype=np.float64)
    before = np.where(ranks == 0, 1.0, j / np.maximum(ranks, 1.0))
    after = (j + 1) / (ranks + 1)
    return float(((before + after) / 2).sum() / n_relevant)


def precision_at(rel: np.ndarray, k: int) -> float:
    return float(rel[:k].sum() / k)


def recall_at(rel: np.ndarray, k: int, n_relevant: int) -> float:
    return float(rel[:k].sum() / n_relevant) if n_relevant else 0.0


def summarise(rels: list[np.ndarray], n_rels: list[int]) -> dict[str, float]:
    """mAP (non-interpolated), mAP_trapezoid (the official scripts' rule), P@1, P@10, R@1, R@5,
    R@10, averaged over queries."""
    def mean(f) -> float:
        return float(np.mean([f(r, n) for r, n in zip(rels, n_rels)])) if rels else 0.0

    return {
        "mAP": mean(average_precision),
        "mAP_trapezoid": mean(average_precision_trapezoid),
        "P@1": mean(lambda r, n: precision_at(r, 1)),
        "P@10": mean(lambda r, n: precision_at(r, 10)),
        "R@1": mean(lambda r, n: recall_at(r, 1, n)),
        "R@5": mean(lambda r, n: recall_at(r, 5, n)),
        "R@10": mean(lambda r, n: recall_at(r, 10, n)),
    }
