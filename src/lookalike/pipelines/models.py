"""Fine-tuned models on disk (made by ``lookalike train``), read wherever a packaged backbone is.

``MODEL/model.json`` names the backbone, the weights file (the whole network's state dict, named
by a hash of its content so that every retraining gets its own ONNX export and feature caches),
the learned GeM exponent, the input size, whether the descriptor is averaged over the image's four
quarter turns (``turns``, chosen in training for images without an up) and an optional learned
whitening (``whiten.npz``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.errors import BadInputError, NotFoundError
from lookalike.postprocess import LearnedWhitening

FORMAT = "lookalike-model/1"


@dataclass
class ModelSpec:
    """What ``model.json`` says, with paths made absolute."""

    folder: Path
    backbone: str
    weights: Path
    p: float
    max_side: int
    whitening: Path | None
    info: dict[str, Any]
    turns: bool = False

    def extractor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``DeepExtractor`` that reproduce the trained descriptor."""
        return dict(backbone=self.backbone, aggregator="gem", max_side=self.max_side,
                    weights=str(self.weights), p=round(self.p, 4), **({"turns": True} if self.turns else {}))

    def post_steps(self) -> list[Any]:
        """Post-processing steps of the model (the learned whitening when there is one)."""
        if self.whitening is None:
            return []
        return [LearnedWhitening().load(self.whitening.parent)]


def load_model(path: str | Path) -> ModelSpec:
    """The model in folder ``path`` (or its ``model.json``)."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    meta_file = folder / "model.json"
    if not meta_file.exists():
        raise NotFoundError(f"{path}: not a trained model (no model.json); make one with `lookalike train`")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise BadInputError(f"{meta_file}: unknown format {meta.get('format')!r}")
    folder = folder.resolve()
    white = folder / meta["whitening"] if meta.get("whitening") else None
    return ModelSpec(folder, meta["backbone"], folder / meta["weights"], float(meta["p"]),
                     int(meta["max_side"]), white, meta, bool(meta.get("turns", False)))
