"""VLAD (Jégou et al. 2010; Arandjelović & Zisserman 2013): residuals of local descriptors to a
small vocabulary, summed per word, intra-normalised, power-normalised and L2-normalised, with an
optional PCA (whitening) learned on training images.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lookalike.errors import BadInputError

from lookalike.features.base import Extractor
from lookalike.features.local.keypoints import Detector, LocalFeatures, make_detector
from lookalike.features.local.vocab import Vocabulary

PCA_FILE = "vlad_pca.npz"


def vlad(x: np.ndarray, vocab: Vocabulary, alpha: float = 0.5) -> np.ndarray:
    """The VLAD vector (k * d,) float32 of float descriptors ``x`` (n, d)."""
    k, d = vocab.k, vocab.dim
    v = np.zeros((k, d), np.float64)
    if len(x):
        w = vocab.assign(x, 1)[0][:, 0]
        np.add.at(v, w, x - vocab.centroids[w])
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12  # intra-normalisation
    v = v.reshape(-1)
    v = np.sign(v) * np.abs(v) ** alpha  # power normalisation
    return (v / (np.linalg.norm(v) + 1e-12)).astype(np.float32)


class VladExtractor(Extractor):
    """An ``Extractor`` (``name``, ``dim``, ``metric``, ``describe``) over a local detector."""

    metric = "ip"

    def __init__(self, kind: str = "sift", words: int = 64, max_kpts: int = 1000,
                 min_side: int | None = 650, alpha: float = 0.5, pca_dim: int | None = None,
                 whiten: bool = True) -> None:
        self.kind, self.words, self.max_kpts, self.min_side = kind, words, max_kpts, min_side
        self.alpha, self.pca_dim, self.whiten = alpha, pca_dim, whiten
        self.name = f"{kind}-vlad"
        self.detector: Detector = make_detector(kind, max_kpts=max_kpts, min_side=min_side)
        self.vocab: Vocabulary | None = None
        self.mean: np.ndarray | None = None
        self.proj: np.ndarray | None = None  # (pca_dim, k*d)

    @property
    def dim(self) -> int:
        return int(self.pca_dim) if self.pca_dim else self.words * self.detector.dim

    def fit(self, images_or_feats: Sequence[np.ndarray] | Sequence[LocalFeatures]) -> None:
        """Learn the vocabulary (and the PCA) from training images or their local features."""
        feats = self._feats(images_or_feats)
        x = np.concatenate([f.float_desc() for f in feats])
        self.vocab = Vocabulary.fit(x, self.words, he_bits=0, max_train=200_000)
        if self.pca_dim:
            v = np.stack([vlad(f.float_desc(), self.vocab, self.alpha) for f in feats]).astype(np.float64)
            if self.pca_dim > min(v.shape):
                raise BadInputError(f"PCA to {self.pca_dim} needs at least that many training images")
            self.mean = v.mean(axis=0)
            _, s, vt = np.linalg.svd(v - self.mean, full_matrices=False)
            p = vt[:self.pca_dim]
            if self.whiten:
                p = p / (s[:self.pca_dim, None] / np.sqrt(len(v)) + 1e-6)
            self.proj = p.astype(np.float32)

    def _feats(self, items: Sequence[Any]) -> list[LocalFeatures]:
        return [it if isinstance(it, LocalFeatures) else self.detector.detect(it) for it in items]

    def describe_features(self, feats: Sequence[LocalFeatures]) -> np.ndarray:
        if self.vocab is None:
            raise RuntimeError("VladExtractor needs fit() or load() first")
        v = np.stack([vlad(f.float_desc(), self.vocab, self.alpha) for f in feats]) if feats else \
            np.zeros((0, self.words * self.detector.dim), np.float32)
        if self.proj is not None:
            v = (v - self.mean.astype(np.float32)) @ self.proj.T
            v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
        return v.astype(np.float32)

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.describe_features(self._feats(images))

    def config(self) -> dict[str, Any]:
        return {"extractor": "vlad", "kind": self.kind, "words": self.words, "max_kpts": self.max_kpts,
                "min_side": self.min_side, "alpha": self.alpha, "pca_dim": self.pca_dim, "whiten": self.whiten}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        assert self.vocab is not None
        self.vocab.save(directory, f"{self.name}_vocabulary.npz")
        extra = {} if self.proj is None else {"mean": self.mean, "proj": self.proj}
        np.savez(directory / f"{self.name}_{PCA_FILE}", config=json.dumps(self.config()), **extra)

    def load(self, directory: Path) -> None:
        directory = Path(directory)
        self.vocab = Vocabulary.load(directory, f"{self.name}_vocabulary.npz")
        z = np.load(directory / f"{self.name}_{PCA_FILE}")
        if "proj" in z:
            self.mean, self.proj = z["mean"], z["proj"]
