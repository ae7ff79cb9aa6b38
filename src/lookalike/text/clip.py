"""An image-text encoder from a CLIP-style checkpoint on local disk (a Hugging Face CLIP folder).

No CLIP weights can be installed here; a user who has a checkpoint folder (``config.json``,
weights, tokenizer and image processor files) points ``ClipEncoder`` at it. Nothing is downloaded
(``local_files_only=True``). Text and image embeddings share one space, so the encoder serves
text → image and image → image search; ``TextIndex.set_vectors("clip", ...)`` stores the images'.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


class ClipEncoder:
    """``encode_text(texts)`` and ``encode_images(rgbs)`` -> unit rows of dimension ``dim``."""

    def __init__(self, folder: str | Path, batch_size: int = 32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.folder = Path(folder)
        if not (self.folder / "config.json").exists():
            raise FileNotFoundError(f"{self.folder}: not a CLIP checkpoint folder (no config.json)")
        self._torch = torch
        self.model = CLIPModel.from_pretrained(str(self.folder), local_files_only=True).eval()
        self.processor = CLIPProcessor.from_pretrained(str(self.folder), local_files_only=True)
        self.dim = int(self.model.config.projection_dim)
        self.batch_size = batch_size
        self.name = f"clip:{self.folder.name}"

    @staticmethod
    def _unit(x) -> np.ndarray:
        x = x.detach().float().numpy() if hasattr(x, "detach") else np.asarray(x, np.float32)
        return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    @staticmethod
    def _tensor(out):
        """transformers returns a tensor, or (newer) an output object holding the pooled embeddings."""
        if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
            return out.pooler_output
        return out

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.processor(text=list(texts[s:s + self.batch_size]), return_tensors="pt", padding=True,
                                 truncation=True)
            with self._torch.inference_mode():
                out.append(self._unit(self._tensor(self.model.get_text_features(
                    input_ids=enc["input_ids"], attention_mask=enc.get("attention_mask")))))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for s in range(0, len(images), self.batch_size):
            enc = self.processor(images=[np.asarray(im) for im in images[s:s + self.batch_size]], return_tensors="pt")
            with self._torch.inference_mode():
                out.append(self._unit(self._tensor(self.model.get_image_features(pixel_values=enc["pixel_values"]))))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    # encoder protocol used by TextIndex (query side)
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_text(texts)
