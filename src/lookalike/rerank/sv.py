"""The ``sv`` re-rank step: spatial verification of the top of any pipeline's ranking.

The query's local features come from the query context (its RGB image or path); the candidates'
from the index (kept by its writer when the pipeline has ``sv``), or, for an index built without
it, extracted from the candidates' files and kept in memory only (a search never writes). Each of
the top ``top_k`` candidates gets ``score + weight * min(inliers, cap) / cap`` when it has at least
``min_inliers`` inliers, so verified scores lie in [score, score + weight].
"""
from __future__ import annotations

import logging

from typing import Any, Sequence

import numpy as np

from lookalike.store.base import VectorStore
from lookalike.rerank.base import RERANKERS, Reranker, merge_head
from lookalike.features.local.keypoints import Detector, LocalFeatures, make_detector
from lookalike.errors import BadInputError, UnsupportedError
from lookalike.features.local.verify import VerifyParams, verify

# what the index stores per image for verification (query features must match these settings)
INDEX_DETECTOR = dict(kind="sift", max_kpts=1000, min_side=650)


log = logging.getLogger(__name__)

def fuse(scores: np.ndarray, inliers: np.ndarray, min_inliers: int, weight: float, cap: int) -> np.ndarray:
    """First-stage similarity plus a bonus that grows with the inlier count up to ``cap``."""
    bonus = weight * np.minimum(inliers, cap) / float(cap)
    return np.where(inliers >= min_inliers, scores + bonus, scores).astype(np.float32)


@RERANKERS.register("sv")
class SpatialVerification(Reranker):
    """Spatial verification: RootSIFT matches + MAGSAC homography inliers over the top 100."""

    name = "sv"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"top_k": 100, "min_inliers": 8, "weight": 1.0, "cap": 40, "verify_kpts": 500,
                "model": "homography"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.detector: Detector = make_detector(**INDEX_DETECTOR)
        self.vparams = VerifyParams(max_kpts=int(self.params["verify_kpts"]), model=self.params["model"])
        self.features: dict[int, LocalFeatures] = {}  # extracted at search time, in memory only
        self.cache_size = 5000

    def query_features(self, context: Any) -> LocalFeatures:
        given = getattr(context, "query_features", None)  # precomputed (benchmarks)
        if given is not None:
            return given
        img = getattr(context, "image", None)
        if img is None:
            path = getattr(context, "path", None)
            if path is None:
                raise BadInputError("sv needs the query image (or its path) in the query context")
            from lookalike.io import load_image

            img = load_image(path)
        return self.detector.detect(img)

    def candidate_features(self, ids: Sequence[int], context: Any) -> list[LocalFeatures | None]:
        """Features of ``ids``: those the index keeps, else extracted from the files (kept in an
        in-memory cache of ``cache_size`` images, never written to the index)."""
        ids = [int(i) for i in ids]
        lookup = getattr(context, "local_features", None)
        feats = lookup(ids) if lookup is not None else [None] * len(ids)
        missing = [j for j, f in enumerate(feats) if f is None]
        if not missing:
            return feats
        for j in missing:
            feats[j] = self.features.get(ids[j])
        todo = [ids[j] for j, f in enumerate(feats) if f is None]
        paths = getattr(context, "paths", None)
        if not todo or paths is None:
            if todo and lookup is None and not self.features:
                raise UnsupportedError("sv needs local features of the database: search an index "
                                       "(they are kept when it is built with sv) or give the paths")
            return feats
        from lookalike.io import ImageError, load_image

        where = paths(todo)
        if len(todo) > 10:
            log.info("verifying: extracting the local features of %d images (kept in memory)...", len(todo))
        for j, i in enumerate(ids):
            if feats[j] is not None or i not in where:
                continue
            try:
                feats[j] = self.detector.detect(load_image(where[i]))
            except ImageError:
                continue
            self._remember(i, feats[j])
        return feats

    def _remember(self, image_id: int, feats: LocalFeatures) -> None:
        """Keep the features, dropping the oldest beyond ``cache_size`` (searches may share the cache)."""
        self.features[image_id] = feats
        while len(self.features) > self.cache_size:
            try:
                self.features.pop(next(iter(self.features)), None)
            except (RuntimeError, StopIteration):  # another search changed it meanwhile
                break

    def rerank(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray, store: VectorStore,
               context: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if context is None:
            raise UnsupportedError("sv needs a query context (the query image and an index)")
        qf = self.query_features(context)
        p = self.params
        out_s, out_i = [], []
        for s, i in zip(np.atleast_2d(scores), np.atleast_2d(ids)):
            head = np.flatnonzero(i >= 0)[: int(p["top_k"])]
            cands = self.candidate_features(i[head].tolist(), context)
            inl = verify(qf, cands, self.vparams)
            hs = fuse(s[head], inl, int(p["min_inliers"]), float(p["weight"]), int(p["cap"]))
            ms, mi = merge_head(hs, i[head], s, i)
            out_s.append(ms)
            out_i.append(mi)
        return np.stack(out_s), np.stack(out_i)
