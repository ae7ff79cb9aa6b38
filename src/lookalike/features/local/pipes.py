"""Local-feature pipelines as ordinary ``Pipeline`` parts: an extractor that encodes each image's
visual words and Hamming codes into one fixed-length float32 row (``store.bow.BowStore`` keeps
those rows in an inverted file and answers ``search`` like any vector store).

Row layout (``1 + 6 * max_kpts`` floats): the keypoint count, then per keypoint its word, its
64-bit HE code as four exact 16-bit integers, and its orientation bin and log-scale (for weak
geometric consistency) packed in one integer. Queries use single assignment here (the row holds one
word per keypoint); ``BowIndex`` used directly also offers multiple assignment.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lookalike.config import cache_dir
from lookalike.features.base import Extractor
from lookalike.features.local.bow import BowIndex
from lookalike.features.local.keypoints import Detector, LocalFeatures, make_detector
from lookalike.features.local.vocab import Vocabulary

VOCAB_FILE = "vocabulary.npz"


FIELDS = 6  # floats per keypoint in a row


def encode_row(words: np.ndarray, sigs: np.ndarray, max_kpts: int, geo: np.ndarray | None = None) -> np.ndarray:
    """One row from words (n,), HE codes (n,) uint64 and geometry (n, 2) [angle bin, log-scale]."""
    n = min(len(words), max_kpts)
    row = np.zeros(1 + FIELDS * max_kpts, np.float32)
    row[0] = n
    body = row[1:].reshape(max_kpts, FIELDS)
    body[:n, 0] = words[:n]
    body[:n, 1:5] = np.ascontiguousarray(sigs[:n], np.uint64).view(np.uint16).reshape(-1, 4).astype(np.float32)
    if geo is not None:
        body[:n, 5] = geo[:n, 0].astype(np.float32) * 64 + np.clip(geo[:n, 1], -32, 31) + 32
    return row


def decode_row(row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(words (n,) int32, HE codes (n,) uint64, geometry (n, 2) int16) of an encoded row."""
    n = int(row[0])
    body = row[1:].reshape(-1, FIELDS)[:n]
    words = body[:, 0].astype(np.int32)
    sigs = np.ascontiguousarray(body[:, 1:5].astype(np.uint16)).view(np.uint64).reshape(-1)
    g = body[:, 5].astype(np.int64)
    geo = np.stack([g // 64, g % 64 - 32], axis=1).astype(np.int16)
    return words, sigs, geo


class BowExtractor(Extractor):
    """Local features -> (word, HE code) per keypoint, as one row; needs a vocabulary (``fit``)."""

    metric = "ip"
    max_side = None

    def __init__(self, kind: str = "sift", words: int = 10000, max_kpts: int = 1500,
                 min_side: int | None = 650, he_bits: int = 64, fit_images: int = 400) -> None:
        self.kind, self.words, self.max_kpts, self.min_side = kind, words, max_kpts, min_side
        self.he_bits = he_bits if kind != "orb" else min(he_bits, 64)
        self.fit_images = fit_images
        self.name = f"{kind}-bow"
        self.dim = 1 + FIELDS * max_kpts
        self.detector: Detector = make_detector(kind, max_kpts=max_kpts, min_side=min_side)
        self.vocab: Vocabulary | None = None

    @property
    def fitted(self) -> bool:
        return self.vocab is not None

    def fit(self, images: Sequence[np.ndarray] | Sequence[LocalFeatures]) -> None:
        """Learn the vocabulary from (at most ``fit_images``) training images or their features."""
        feats = [f if isinstance(f, LocalFeatures) else self.detector.detect(f)
                 for f in list(images)[: self.fit_images]]
        x = np.concatenate([f.float_desc() for f in feats if len(f)])
        k = int(min(self.words, max(16, len(x) // 20)))
        self.vocab = Vocabulary.fit(x, k, niter=10, he_bits=self.he_bits, max_train=120_000)

    def fit_folder(self, folder: Path) -> None:
        """Fit on a folder's (or benchmark dataset's) images, cached by folder and settings."""
        from lookalike.io import is_image_name, load_image

        folder = Path(folder)
        key = hashlib.sha1(f"{folder.resolve()}|{json.dumps(self.config(), sort_keys=True)}".encode()).hexdigest()[:16]
        f = cache_dir() / "local" / f"vocab-{key}.npz"
        if f.exists():
            self.vocab = Vocabulary.load(f.parent, f.name)
            return
        paths = sorted(p for p in folder.rglob("*") if is_image_name(p.name))
        step = max(1, len(paths) // self.fit_images)
        self.fit([load_image(p) for p in paths[::step][: self.fit_images]])
        self.vocab.save(f.parent, f.name)  # type: ignore[union-attr]

    def encode(self, feats: LocalFeatures) -> np.ndarray:
        if self.vocab is None:
            raise RuntimeError(f"{self.name} has no vocabulary: index a collection (it is learned from it) "
                               "or evaluate with --fit-on DATASET")
        x = feats.float_desc()
        w = self.vocab.assign(x, 1)[0][:, 0]
        geo = BowIndex(self.vocab).geometry(feats)
        return encode_row(w, self.vocab.signatures(x, w), self.max_kpts, geo)

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.encode(self.detector.detect(im)) for im in images])

    def config(self) -> dict[str, Any]:
        return {"extractor": "bow", "kind": self.kind, "words": self.words, "max_kpts": self.max_kpts,
                "min_side": self.min_side, "he_bits": self.he_bits}

    def save(self, directory: Path) -> None:
        if self.vocab is not None:
            self.vocab.save(Path(directory), VOCAB_FILE)

    def load(self, directory: Path) -> None:
        if (Path(directory) / VOCAB_FILE).exists():
            self.vocab = Vocabulary.load(Path(directory), VOCAB_FILE)
