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
