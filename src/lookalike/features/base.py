"""The extractor contract: images in, one float32 vector per image out.

Every extractor subclasses ``Extractor`` and overrides what it has; the defaults say "nothing to
learn, vectors searched as described, no classifier logits", so callers never probe abilities.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


class Extractor:
    """Describes RGB images (H, W, 3 uint8 arrays) as rows of a float32 matrix.

    ``metric`` is ``"ip"`` (higher inner product = more similar; vectors are prepared so that
    the inner product *is* the chosen similarity), ``"l2"`` or ``"chi2"`` (brute force).
    """

    name: str = "extractor"
    dim: int = 0
    metric: str = "ip"
    max_side: int | None = None  # the long side images are described at (None: as given)
    decode_side: int | None = None  # set when describe resizes every image to at most this long side itself
    gives_logits: bool = False  # ``describe_with_logits`` returns ImageNet logits

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def describe_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Descriptors and, where ``gives_logits``, the (N, 1000) ImageNet logits of the same pass."""
        return self.describe(images), None

    def prepare_vectors(self, x: np.ndarray) -> np.ndarray:
        """Raw descriptors -> the vectors whose inner product is the similarity."""
        return x

    def config(self) -> dict[str, Any]:
        return {"extractor": self.name}

    # -- learned state (vocabularies): none by default ------------------------------------------
    @property
    def fitted(self) -> bool:
        return True

    def fit(self, images: Sequence[np.ndarray]) -> None:
        """Learn from a sample of the collection's images (only where ``fitted`` is False)."""

    def save(self, directory: Path) -> None:
        """Keep learned state in ``directory`` (nothing by default)."""

    def load(self, directory: Path) -> None:
        """Read what ``save`` kept."""
