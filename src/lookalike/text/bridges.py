"""The index's learned bridges: one ``TextBridge`` per text space, saved together in
``text_bridge.npz``.

The "use" bridge maps images into the multilingual USE space, so captions in one language train
it and queries in any of USE's languages use it; the "minilm" bridge serves English queries.
Image vectors are stored as kinds "bridge" (MiniLM) and "bridge_use". A file written before the
multilingual space (one MiniLM bridge) still loads.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from lookalike.text.bridge import BRIDGE_FILE, BridgeConfig, TextBridge
from lookalike.text.encoder import MINILM, SPACES, USE, encoder_for, query_spaces


# per space, the bridge settings that differ from ``BridgeConfig``'s: the USE bridge has a hidden
# layer (512, GELU); chosen on two validation splits inside the first 800 flickr8k_1k_zh images
SPACE_CONFIG: dict[str, dict] = {USE: {"hidden": 512}}


def bridge_config(space: str, base: BridgeConfig | None = None) -> BridgeConfig:
    return BridgeConfig(**{**(base or BridgeConfig()).__dict__, **SPACE_CONFIG.get(space, {})})


def vector_kind(space: str) -> str:
    return "bridge" if space == MINILM else f"bridge_{space}"


def store_projection(ti, kind: str, image_ids: Sequence[int], bridge: TextBridge, projected: np.ndarray) -> None:
    """Store bridged image vectors as ``kind`` and, when the bridge keeps its training texts,
    their hubness as ``hub:kind``."""
    ti.set_vectors(kind, image_ids, projected)
    hub = bridge.hubness(projected)
    if hub is not None:
        ti.set_values(f"hub:{kind}", image_ids, hub)


class Bridges:
    """``heads[space] -> TextBridge``; ``in_dim`` and ``config`` as a single bridge's."""

    def __init__(self, heads: dict[str, TextBridge]) -> None:
        if not heads:
            raise ValueError("no bridge")
        self.heads = heads

    @property
    def in_dim(self) -> int:
        return next(iter(self.heads.values())).in_dim

    @property
    def config(self) -> BridgeConfig:
        return next(iter(self.heads.values())).config

    def project(self, image_vectors: np.ndarray, class_probs: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per vector kind ("bridge", "bridge_use"), the images' unit rows in that space."""
        return {vector_kind(sp): b.project(image_vectors, class_probs) for sp, b in self.heads.items()}

    def store(self, ti, image_ids: Sequence[int], image_vectors: np.ndarray,
              class_probs: np.ndarray | None = None) -> None:
        """The images' vectors of every head, and their hubness (``TextBridge.hubness``)."""
        for sp, b in self.heads.items():
            store_projection(ti, vector_kind(sp), image_ids, b, b.project(image_vectors, class_probs))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / BRIDGE_FILE
        arrays: dict[str, np.ndarray] = {}
        for sp, b in self.heads.items():
            arrays.update({f"{sp}.{k}": v for k, v in b.weights.items()})
            arrays.update({f"{sp}.cfg_{k}": np.asarray(v) for k, v in b.config.__dict__.items()})
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Bridges":
        path = Path(path)
        if path.is_dir():
            path = path / BRIDGE_FILE
        z = np.load(path)
        spaces = sorted({k.split(".", 1)[0] for k in z.files if "." in k and k.split(".", 1)[0] in SPACES})
        if not spaces:  # a single MiniLM bridge (older file)
            return cls({MINILM: TextBridge.load(path)})
        heads = {}
        for sp in spaces:
            keys = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith(sp + ".")}
            b = TextBridge(BridgeConfig(**{k[4:]: v.item() for k, v in keys.items() if k.startswith("cfg_")}))
            b.weights = {k: v for k, v in keys.items() if not k.startswith("cfg_")}
            heads[sp] = b
        return cls(heads)


def train_bridges(image_vectors: np.ndarray, texts: Sequence[str], owner: np.ndarray,
                  class_probs: np.ndarray | None = None, spaces: Sequence[str] | None = None,
                  config: BridgeConfig | None = None) -> Bridges:
    """A bridge per space, trained on ``texts`` (``owner[j]``: the row of ``image_vectors`` that
    ``texts[j]`` describes). By default: the USE bridge on every text, and the MiniLM one on the
    English texts when there are at least two."""
    from lookalike.text.classes import prompt_embeddings

    heads: dict[str, TextBridge] = {}
    owner = np.asarray(owner, np.int64)
    for sp in spaces or (USE, MINILM):
        rows = [j for j, t in enumerate(texts) if sp in query_spaces(t)]
        if len(rows) < 2:
            continue
        enc = encoder_for(sp)
        cfg = bridge_config(sp, config)
        heads[sp] = TextBridge(cfg).fit(image_vectors, enc.encode([texts[j] for j in rows]), owner[rows],
                                        class_probs, prompt_embeddings(enc) if class_probs is not None else None)
    return Bridges(heads)
