"""Spatial verification: tentative matches by mutual nearest neighbour + ratio test, then a
geometric model (homography by MAGSAC++ or a partial affine by RANSAC) fitted with OpenCV; the
number of inliers measures how well a candidate image shows the same scene as the query.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from lookalike.features.local.keypoints import LocalFeatures


@dataclass
class VerifyParams:
    max_kpts: int = 500  # strongest keypoints per image used for matching (speed)
    ratio: float = 0.85  # Lowe's ratio test on descriptor distances (1 disables)
    mutual: bool = True  # keep only mutual nearest neighbours
    model: str = "homography"  # or "affine"
    threshold: float = 0.015  # inlier reprojection error, as a fraction of the image's longer side
    max_iters: int = 1000
    min_matches: int = 6


def _distances(a: np.ndarray, b: np.ndarray, kind: str) -> tuple[np.ndarray, bool]:
    """(na, nb) distances and whether they are squared: float descriptors (unit rows) give the
    squared Euclidean distance, ORB bits (0/1 rows) the Hamming distance."""
    if kind == "orb":
        return a.sum(1)[:, None] + b.sum(1)[None, :] - 2.0 * (a @ b.T), False
    d = a @ b.T
    d *= -2.0
    d += 2.0
    return d, True


def _match_block(d: np.ndarray, ratio: float, mutual: bool, squared: bool) -> np.ndarray:
    """Mutual nearest neighbours passing the ratio test within one (nq, nc) distance block."""
    if d.shape[0] < 2 or d.shape[1] < 2:
        return np.zeros((0, 2), np.int64)
    rows = np.arange(d.shape[0])
    best = np.argmin(d, axis=1)
    ok = np.argmin(d, axis=0)[best] == rows if mutual else np.ones(len(rows), bool)
    if ratio < 1:
        d1 = d[rows, best].copy()
        d[rows, best] = np.inf
        d2 = d.min(axis=1)
        r = ratio * ratio if squared else ratio
        ok &= d1 <= r * d2 + 1e-9
    qi = np.flatnonzero(ok)
    return np.stack([qi, best[qi]], axis=1)


def match_many(q: LocalFeatures, cands: Sequence[LocalFeatures], ratio: float = 0.85,
               mutual: bool = True) -> list[np.ndarray]:
    """Tentative correspondences (m, 2) [query index, candidate index] for each candidate.

    One small single-threaded matrix product per pair: cache-friendly, and it does not fight
    other processes for cores the way one large multi-threaded product does.
    """
    a = q.float_desc()
    with _single_thread():
        out = []
        for c in cands:
            d, squared = _distances(a, c.float_desc(), q.kind)
            out.append(_match_block(d, ratio, mutual, squared))
    return out


def _single_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def match(q: LocalFeatures, c: LocalFeatures, ratio: float = 0.85, mutual: bool = True) -> np.ndarray:
    """Tentative correspondences (m, 2) int: rows of (query index, candidate index)."""
    return match_many(q, [c], ratio, mutual)[0]


def fit_model(qxy: np.ndarray, cxy: np.ndarray, params: VerifyParams,
              scale: float) -> tuple[np.ndarray | None, np.ndarray]:
    """Fit the geometric model; return (matrix or None, boolean inlier mask)."""
    n = len(qxy)
    if n < max(params.min_matches, 4):
        return None, np.zeros(n, bool)
    thr = params.threshold * scale
    src, dst = qxy.reshape(-1, 1, 2).astype(np.float32), cxy.reshape(-1, 1, 2).astype(np.float32)
    if params.model == "affine":
        m, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=thr,
                                              maxIters=params.max_iters, confidence=0.999)
    else:
        m, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, thr, maxIters=params.max_iters,
                                     confidence=0.999)
    if m is None or mask is None:
        return None, np.zeros(n, bool)
    a = m[:2, :2] / (m[2, 2] if m.shape[0] == 3 and abs(m[2, 2]) > 1e-12 else 1.0)
    det = float(np.linalg.det(a))
    if not (1e-2 < abs(det) < 1e2):  # degenerate (collapsed or exploded) transforms
        return None, np.zeros(n, bool)
    return m, mask.reshape(-1).astype(bool)


def _inliers_from_matches(q: LocalFeatures, c: LocalFeatures, m: np.ndarray, p: VerifyParams
                          ) -> tuple[int, np.ndarray, np.ndarray | None]:
    scale = float(max(*q.image_size, *c.image_size))
    model, mask = fit_model(q.kpts[m[:, 0], :2], c.kpts[m[:, 1], :2], p, scale)
    inl = m[mask]
    n = len(np.unique(np.round(q.kpts[inl[:, 0], :2]), axis=0)) if len(inl) else 0
    return n, inl, model


def verify_pair(q: LocalFeatures, c: LocalFeatures, params: VerifyParams | None = None
                ) -> tuple[int, np.ndarray, np.ndarray | None]:
    """(inlier count, inlier correspondences (m, 2), model) of one query/candidate pair.

    Inliers are counted once per distinct query location (SIFT repeats a point per orientation).
    """
    p = params or VerifyParams()
    q, c = q.subset(p.max_kpts), c.subset(p.max_kpts)
    return _inliers_from_matches(q, c, match(q, c, p.ratio, p.mutual), p)


def verify(query_feats: LocalFeatures, candidate_feats_list: Sequence[LocalFeatures | None],
           params: VerifyParams | None = None) -> np.ndarray:
    """Inlier counts (K,) int of the query against each candidate (0 for a missing one).

    All candidates are matched in one matrix product; pairs with fewer than ``min_matches``
    tentative matches skip the model fit.
    """
    p = params or VerifyParams()
    out = np.zeros(len(candidate_feats_list), np.int64)
    q = query_feats.subset(p.max_kpts)
    pos = [i for i, c in enumerate(candidate_feats_list) if c is not None and len(c) >= 2]
    cands = [candidate_feats_list[i].subset(p.max_kpts) for i in pos]  # type: ignore[union-attr]
    if len(q) < 2 or not cands:
        return out
    for i, c, m in zip(pos, cands, match_many(q, cands, p.ratio, p.mutual)):
        if len(m) >= max(p.min_matches, 4):
            out[i] = _inliers_from_matches(q, c, m, p)[0]
    return out
