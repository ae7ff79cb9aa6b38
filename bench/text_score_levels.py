"""Where the readable score's levels (``text/scale.py`` LEVELS) come from: the raw scores of real
captions against those of nonsense strings, per method and text space.

    PYTHONPATH=src python bench/text_score_levels.py [--bridge]

Prints percentiles (5, 25, 50, 75, 95) of: the query's best cosine with a class embedding
(zero-shot evidence); the best cosine between a caption and another caption of the same image /
of another image (semantic); and with ``--bridge`` the cosine between a caption and bridged images
(bridge trained on the first 800 images, scored on the last 200). Nonsense strings: their maxima.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lookalike.eval.dataset import Dataset  # noqa: E402
from lookalike.text.bridge import BridgeConfig, TextBridge, class_probs  # noqa: E402
from lookalike.text.classes import prompt_embeddings  # noqa: E402
from lookalike.text.encoder import encoder_for  # noqa: E402
from lookalike.eval.text import image_features, text_vectors  # noqa: E402

NONSENSE = ["zzzqqq", "qwxv blorp", "asdfgh", "xkq zzv pllm", "lorem ipsum dolor", "zzz", "hjkl", "blarg fnord",
            "qqq www eee", "xyzzy plugh", "12345", "!!!", "aaaa bbbb", "kjdhf", "vvvvv"]
NONSENSE_ZH = ["鑫龘齉", "嗯嗯嗯", "啊啊啊", "呃", "囧囧", "哈哈哈哈"]


def pct(a: np.ndarray) -> list[float]:
    return [round(float(x), 3) for x in np.percentile(a, [5, 25, 50, 75, 95])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--en", default="../shared/datasets/flickr8k_1k")
    ap.add_argument("--zh", default="../shared/datasets/flickr8k_1k_zh")
    ap.add_argument("--bridge", action="store_true")
    args = ap.parse_args()
    en, zh = Dataset.load(args.en), Dataset.load(args.zh)
    pos = {d: i for i, d in enumerate(en.db_ids)}
    for lang, ds, space in (("en", en, "minilm"), ("en", en, "use"), ("zh", zh, "use")):
        qs = [q for q in ds.queries if q.text]
        y = np.array([pos[q.relevant[0]] for q in qs])
        Q = text_vectors([q.text or "" for q in qs], space)
        enc = encoder_for(space)
        N = enc.encode(NONSENSE + (NONSENSE_ZH if space == "use" else []))
        E = prompt_embeddings(enc)
        print(f"zeroshot:{space} ({lang}) captions {pct((Q @ E.T).max(1))}  nonsense max {round(float((N @ E.T).max()), 3)}")
        S = Q @ Q.T
        np.fill_diagonal(S, -1)
        same = y[:, None] == y[None, :]
        print(f"semantic:{space} ({lang}) same image {pct(np.where(same, S, -1).max(1))}  other image "
              f"{pct(np.where(~same, S, -1).max(1))}  nonsense max {round(float((N @ Q.T).max()), 3)}", flush=True)
        if args.bridge:
            X, L = image_features(en)
            C = class_probs(L)
            m = y < 800
            b = TextBridge(BridgeConfig()).fit(X[:800], Q[m], y[m], C[:800], E)
            V = b.project(X[800:], C[800:])
            t = ~m
            B = Q[t] @ V.T
            print(f"bridge:{space} ({lang}) own image {pct(B[np.arange(t.sum()), y[t] - 800])}  best "
                  f"{pct(B.max(1))}  nonsense max {round(float((N @ V.T).max()), 3)}", flush=True)


if __name__ == "__main__":
    main()
