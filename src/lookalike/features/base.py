"""The extractor protocol: images in, one float32 vector per image out."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Extractor(Protocol):
    """Describes RGB images (H, W, 3 uint8 arrays) as rows of a float32 matrix.

    ``metric`` is ``"ip"`` (higher inner product = more similar; vectors are prepared so that
    the inner product *is* the chosen similarity) or ``"l2"``.
    """

    name: str
    dim: int
    metric: str

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray: ...

    def config(self) -> dict[str, Any]: ...


class Fittable(Protocol):
    """An extractor or post-processing step with learned state saved in the index directory."""

    def fit(self, vectors_or_images: Any) -> None: ...

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...
