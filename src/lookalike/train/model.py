"""A fine-tuned model on disk: a folder usable wherever a packaged backbone is.

``MODEL/model.json`` names the backbone, the weights file (the whole network's state dict, named
by a hash of its content so that every retraining gets its own ONNX export and feature caches),
the learned GeM exponent, the input size, ``turns`` (the descriptor averaged over quarter turns) and
an optional learned whitening (``whiten.npz``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from lookalike.pipelines.models import FORMAT, ModelSpec, load_model  # noqa: F401  (the reading side)


def save_model(folder: Path, backbone: str, state_dict: dict, p: float, max_side: int,
               whitening: Any | None = None, info: dict[str, Any] | None = None, turns: bool = False) -> Path:
    """Write the weights (content-named), the optional whitening and ``model.json`` atomically."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    data = buf.getvalue()
    name = f"{backbone}-{hashlib.sha1(data).hexdigest()[:12]}.pth"
    if not (folder / name).exists():
        tmp = folder / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)
    if whitening is not None:
        whitening.save(folder)
    elif (folder / "whiten.npz").exists():
        (folder / "whiten.npz").unlink()
    meta = {"format": FORMAT, "backbone": backbone, "weights": name, "aggregator": "gem", "p": float(p),
            "max_side": int(max_side), **({"turns": True} if turns else {}),
            "whitening": "whiten.npz" if whitening is not None else None,
            **({"training": info} if info else {})}
    tmp = folder / "model.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / "model.json")
    for old in folder.glob(f"{backbone}-*.pth"):
        if old.name != name:
            old.unlink()
    return folder
