"""How the zero-shot settings were chosen: class-embedding recipe, flattening of the image's class
probabilities and softmax temperature, scored on the captions of the first 800 images only
(ranked against all 1000), for English (MiniLM, USE) and Chinese (USE) captions.

    PYTHONPATH=src python bench/text_zero_shot.py [--en ../shared/datasets/flickr8k_1k]
                                                  [--zh ../shared/datasets/flickr8k_1k_zh]

Image features come from the evaluator's cache (``lookalike eval DATASET -p text`` fills it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lookalike.eval.dataset import Dataset  # noqa: E402
from lookalike.text.bridge import class_probs  # noqa: E402
from lookalike.text.classes import PROMPT, prompt_embeddings, softmax  # noqa: E402
from lookalike.text.encoder import encoder_for  # noqa: E402
from lookalike.eval.text import image_features, text_vectors  # noqa: E402


def r10(S: np.ndarray, target: np.ndarray) -> float:
    t = S[np.arange(len(S)), target][:, None]
    rank = (S > t).sum(1) + (S == t).sum(1) - 1
    return round(float((rank < 10).mean()), 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--en", default="../shared/datasets/flickr8k_1k")
    ap.add_argument("--zh", default="../shared/datasets/flickr8k_1k_zh")
    ap.add_argument("--first", type=int, default=800, help="captions of the first N images score the choice")
    args = ap.parse_args()
    en, zh = Dataset.load(args.en), Dataset.load(args.zh)
    _, L = image_features(en)
    pos = {d: i for i, d in enumerate(en.db_ids)}
    C = class_probs(L)
    flat = {"p": C, "sqrt(p)": np.sqrt(C)}
    flat = {k: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for k, v in flat.items()}
    runs = [("en", en, "minilm"), ("en", en, "use"), ("zh", zh, "use")]
    for lang, ds, space in runs:
        qs = [q for q in ds.queries if q.text and pos[q.relevant[0]] < args.first]
        y = np.array([pos[q.relevant[0]] for q in qs])
        Q = text_vectors([q.text or "" for q in qs], space)
        enc = encoder_for(space)
        recipes = {"prompt only": prompt_embeddings(enc, PROMPT), "recipe (classes.py)": prompt_embeddings(enc)}
        for rname, E in recipes.items():
            sims = Q @ E.T
            for fname, P in flat.items():
                row = [f"T={T}: {r10(softmax(sims / T) @ P.T, y)}" for T in (0.05, 0.08, 0.12)]
                print(f"{lang} {space:6s} {rname:20s} {fname:8s}", "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
