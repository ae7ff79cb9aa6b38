"""The ``sv`` re-rank step: spatial verification of the top of any pipeline's ranking.

The query's local features come from the query context (its RGB image or path); the candidates'
from the ``LocalFeatureStore`` in the index directory (filled at indexing time by a write hook,
or lazily from the catalog's paths). Each of the top ``top_k`` candidates gets
``score + weight * min(inliers, cap) / cap`` when it has at least ``min_inliers`` inliers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...index.base import VectorStore
from ...rerank.base import RERANKERS, Reranker, merge_head
from .keypoints import Detector, LocalFeatures, make_detector
from .store import LocalFeatureStore
from .verify import VerifyParams, verify

# what the index stores per image for verification (query features must match these settings)
INDEX_DETECTOR = dict(kind="sift", max_kpts=1000, min_side=650)


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
        self._stores: dict[Path, LocalFeatureStore] = {}
        self.features: dict[int, LocalFeatures] = {}  # in-memory features for use without an index dir

    def feature_store(self, directory: Path) -> LocalFeatureStore:
        """The ``LocalFeatureStore`` of an index directory (one open connection per directory)."""
        d = Path(directory)
        if d not in self._stores:
            self._stores[d] = LocalFeatureStore(d)
        return self._stores[d]

    def _store(self, directory: Path | None) -> LocalFeatureStore | None:
        return None if directory is None else self.feature_store(directory)

    def query_features(self, context: Any) -> LocalFeatures:
        given = getattr(context, "local_features", None)  # precomputed (benchmarks)
        if given is not None:
            return given
        img = getattr(context, "image", None)
        if img is None:
            path = getattr(context, "path", None)
            if path is None:
                raise ValueError("sv needs the query image (or its path) in the query context")
            from ...io import load_image

            img = load_image(path)
        return self.detector.detect(img)

    def candidate_features(self, ids: Sequence[int], context: Any) -> list[LocalFeatures | None]:
        """Features of ``ids``: from the index's ``LocalFeatureStore`` (or the in-memory
        ``features``); missing ones are extracted from the catalog's paths and kept."""
        store = self._store(getattr(context, "index_dir", None))
        catalog = getattr(context, "catalog", None)
        if store is None and catalog is None and not self.features:
            raise NotImplementedError("sv needs local features of the database: search an index "
                                      "(they are stored when it is built) or give a catalog")
        feats = store.get_many(ids) if store is not None else [self.features.get(int(i)) for i in ids]
        missing = [j for j, f in enumerate(feats) if f is None]
        if not missing or catalog is None:
            return feats
        from ...io import ImageError, load_image

        new_ids, new_feats = [], []
        for j in missing:
            row = catalog.get(int(ids[j]))
            if row is None:
                continue
            try:
                feats[j] = self.detector.detect(load_image(row.path))
            except ImageError:
                continue
            new_ids.append(int(ids[j]))
            new_feats.append(feats[j])
        if store is not None:
            store.add(new_ids, new_feats)
        else:
            self.features.update(zip(new_ids, new_feats))
        return feats

    def rerank(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray, store: VectorStore,
               context: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if context is None:
            raise NotImplementedError("sv needs a query context (the query image and an index)")
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
