"""Visual vocabulary: FAISS k-means on local descriptors, word assignment, Hamming-embedding codes."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from lookalike.errors import BadInputError

FILENAME = "vocabulary.npz"


class Vocabulary:
    """``k`` centroids in descriptor space plus, optionally, Hamming-embedding (HE) parameters.

    HE (Jégou et al., ECCV 2008): descriptors are projected by a random orthogonal matrix to
    ``he_bits`` dimensions and binarised against per-word medians learned on the training sample.
    """

    def __init__(self, centroids: np.ndarray, projection: np.ndarray | None = None,
                 medians: np.ndarray | None = None) -> None:
        self.centroids = np.ascontiguousarray(centroids, np.float32)
        self.projection, self.medians = projection, medians
        self._index: faiss.Index | None = None

    @property
    def k(self) -> int:
        return int(len(self.centroids))

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def he_bits(self) -> int:
        return 0 if self.projection is None else int(len(self.projection))

    @classmethod
    def fit(cls, descriptors: np.ndarray, k: int, *, niter: int = 20, he_bits: int = 64,
            max_train: int = 400_000, seed: int = 0) -> "Vocabulary":
        """K-means on (a sample of) float32 descriptors (FAISS, exact assignment)."""
        x = np.ascontiguousarray(descriptors, np.float32)
        rng = np.random.default_rng(seed)
        if len(x) > max_train:
            x = x[rng.choice(len(x), max_train, replace=False)]
        if len(x) < k:
            raise BadInputError(f"{len(x)} descriptors cannot train {k} words")
        d = x.shape[1]
        clus = faiss.Clustering(d, k)
        clus.niter, clus.seed, clus.max_points_per_centroid = niter, seed, 10_000
        clus.train(x, faiss.IndexFlatL2(d))  # exact assignment: faster than a graph rebuilt per iteration
        voc = cls(faiss.vector_to_array(clus.centroids).reshape(k, d))
        if he_bits:
            voc.fit_hamming(x, he_bits, seed)
        return voc

    def fit_hamming(self, x: np.ndarray, bits: int = 64, seed: int = 0) -> None:
        """Random orthogonal projection and per-word medians of the projected training sample."""
        if bits > 64 or bits > self.dim:
            raise ValueError("at most 64 bits and at most the descriptor dimension")
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((self.dim, self.dim)))
        self.projection = np.ascontiguousarray(q[:bits], np.float32)
        words = self.assign(x)[0][:, 0]
        proj = x @ self.projection.T
        med = np.tile(np.median(proj, axis=0), (self.k, 1)).astype(np.float32)
        order = np.argsort(words, kind="stable")
        bounds = np.searchsorted(words[order], np.arange(self.k + 1))
        for w in range(self.k):
            rows = order[bounds[w]:bounds[w + 1]]
            if len(rows) >= 2:
                med[w] = np.median(proj[rows], axis=0)
        self.medians = med

    def assign(self, x: np.ndarray, ma: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``ma`` nearest words (n, ma) int64 and their squared distances (n, ma)."""
        if self._index is None:
            self._index = _assign_index(self.dim, self.k)
            self._index.add(self.centroids)
        x = np.ascontiguousarray(x, np.float32)
        if not len(x):
            return np.zeros((0, ma), np.int64), np.zeros((0, ma), np.float32)
        dist, idx = self._index.search(x, ma)
        return idx, dist

    def signatures(self, x: np.ndarray, words: np.ndarray) -> np.ndarray:
        """HE codes (n,) uint64 of descriptors ``x`` (n, D) relative to their ``words`` (n,)."""
        if self.projection is None:
            return np.zeros(len(x), np.uint64)
        bits = (np.asarray(x, np.float32) @ self.projection.T) > self.medians[words]
        packed = np.packbits(bits, axis=1, bitorder="little")
        out = np.zeros((len(x), 8), np.uint8)
        out[:, :packed.shape[1]] = packed
        return out.view(np.uint64).reshape(-1)

    def save(self, directory: Path, name: str = FILENAME) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        extra = {} if self.projection is None else {"projection": self.projection, "medians": self.medians}
        tmp = directory / (name + ".tmp.npz")
        np.savez(tmp, centroids=self.centroids, **extra)
        tmp.replace(directory / name)

    @classmethod
    def load(cls, directory: Path, name: str = FILENAME) -> "Vocabulary":
        z = np.load(Path(directory) / name)
        return cls(z["centroids"], z["projection"] if "projection" in z else None,
                   z["medians"] if "medians" in z else None)


def _assign_index(d: int, k: int) -> faiss.Index:
    if k < 4096:
        return faiss.IndexFlatL2(d)
    index = faiss.IndexHNSWFlat(d, 32)
    index.hnsw.efSearch, index.hnsw.efConstruction = 64, 80
    return index
