"""The vector-store contract (after FAISS's ``Index``): every backend swaps in behind it."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class VectorStore(ABC):
    """Vectors addressed by int64 ids.

    ``search`` returns ``(scores, ids)`` of shape (Q, k), best first, where a higher score is
    always more similar (for ``metric="l2"`` the score is the negated squared distance). Missing
    slots have id -1 and score -inf.
    """

    dim: int
    metric: str  # "ip" or "l2"

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given ids (ids must not be present already)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; return how many were present."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest neighbours of each query row."""

    @abstractmethod
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, in order (KeyError for an unknown id)."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """All stored ids (int64), in no particular order."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Persist atomically to ``path`` (a file or folder the backend owns)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> "VectorStore":
        """Open what ``save`` wrote."""

    @abstractmethod
    def __len__(self) -> int: ...

    def search_within(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest neighbours among ``ids`` only: a filter applied inside the search, so k
        results come back whenever ``ids`` holds k stored vectors. This default scores the
        subset's stored vectors exactly; backends override it with FAISS's ID selectors."""
        q = as_vectors(queries, self.dim)
        ids = np.intersect1d(as_ids(ids), self.ids())
        out_s, out_i = [], []
        for s in range(0, len(ids), EXACT_CHUNK):
            chunk = ids[s:s + EXACT_CHUNK]
            sc, ii = exact_top_k(q, self.reconstruct(chunk), chunk, k, self.metric)
            out_s.append(sc)
            out_i.append(ii)
        if not out_s:
            return empty_result(len(q), k)
        return merge_top_k(np.hstack(out_s), np.hstack(out_i), k)

    def train(self, vectors: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Learn quantisers from a sample (no-op for exact stores)."""

    @property
    def is_trained(self) -> bool:
        return True


def as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def as_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if v.ndim == 1:
        v = v[None, :]
    if v.shape[1] != dim:
        raise ValueError(f"vectors have dimension {v.shape[1]}, the store holds {dim}")
    return v


EXACT_CHUNK = 16_384  # vectors scored at once by an exact subset search


def empty_result(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)


def exact_top_k(q: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int,
                metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of the queries against these vectors, exactly (higher = more similar)."""
    v = np.ascontiguousarray(vectors, np.float32)
    sc = q @ v.T if metric == "ip" else -((q * q).sum(1)[:, None] - 2 * q @ v.T + (v * v).sum(1)[None])
    return merge_top_k(sc.astype(np.float32), np.broadcast_to(as_ids(ids), sc.shape), k)


def merge_top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of each row of (scores, ids), best first, padded with (-inf, -1)."""
    n, m = scores.shape
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    if m > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores, ids = np.take_along_axis(scores, part, 1), np.take_along_axis(ids, part, 1)
    order = np.argsort(-scores, axis=1, kind="stable")
    s, i = np.take_along_axis(scores, order, 1), np.take_along_axis(np.asarray(ids, np.int64), order, 1)
    if s.shape[1] < k:
        s = np.hstack([s, np.full((n, k - s.shape[1]), -np.inf, np.float32)])
        i = np.hstack([i, np.full((n, k - i.shape[1]), -1, np.int64)])
    i = np.where(np.isfinite(s), i, -1)
    return s, i.astype(np.int64)
