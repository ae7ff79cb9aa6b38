"""Text → image benchmark on flickr8k_1k: zero-shot (nothing learned from the captions) and the
learned bridge (trained on the first 800 images' captions, scored on the last 200).

    PYTHONPATH=src .venv/bin/python bench/text_bench.py [--dataset ../shared/datasets/flickr8k_1k]

Image descriptors and logits are the gem descriptors that ``bench/gem_feats.py`` extracts
once and keeps (~/.cache/lookalike/shared_feats/flickr8k_1k_gem_lite2_352.npz). Caption
embeddings are cached too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lookalike.eval.dataset import Dataset  # noqa: E402
from lookalike.eval.metrics import ranked_relevance, summarise  # noqa: E402
from lookalike.text.bridge import BridgeConfig, TextBridge, class_probs  # noqa: E402
from lookalike.text.classes import prompt_embeddings  # noqa: E402
from lookalike.eval.text import text_vectors  # noqa: E402
from lookalike.text.store import TextIndex  # noqa: E402

import gem_feats  # noqa: E402


def features(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    z = gem_feats.load(ds)
    return z["vectors"].astype(np.float32), z["logits"].astype(np.float32)


def recall(S: np.ndarray, db_ids: list[str], relevant: list[list[str]]) -> dict[str, float]:
    rels = [ranked_relevance(s, db_ids, set(r), set()) for s, r in zip(S, relevant)]
    m = summarise(rels, [len(r) for r in relevant])
    return {k: round(m[k], 4) for k in ("R@1", "R@5", "R@10")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="../shared/datasets/flickr8k_1k")
    ap.add_argument("--holdout", type=int, default=200)
    args = ap.parse_args()
    ds = Dataset.load(args.dataset)
    X, L = features(ds)
    texts = [q.text or "" for q in ds.queries]
    Q = text_vectors(texts)
    ids = np.arange(len(ds.db_ids), dtype=np.int64)
    ti = TextIndex(":memory:")
    ti.set_classes(ids, L)

    t = time.perf_counter()
    _, S = ti.score(texts, methods=("zeroshot",), query_vectors={"minilm": Q})
    print("zero-shot, all images and captions:", recall(S, ds.db_ids, [q.relevant for q in ds.queries]),
          f"({(time.perf_counter() - t) * 1000 / len(texts):.2f} ms/query)")

    order = sorted(range(len(ds.db_ids)), key=lambda i: ds.db_ids[i])
    test_set = {ds.db_ids[i] for i in order[-args.holdout:]}
    train_pos = {ds.db_ids[i]: j for j, i in enumerate(order[:-args.holdout])}
    tr = [(j, train_pos[q.relevant[0]]) for j, q in enumerate(ds.queries) if q.relevant[0] in train_pos]
    te = [j for j, q in enumerate(ds.queries) if q.relevant[0] in test_set]
    train_idx = np.array(order[:-args.holdout])
    t = time.perf_counter()
    C = class_probs(L)  # the bridge's input: descriptor + class probabilities
    bridge = TextBridge(BridgeConfig()).fit(X[train_idx], Q[[j for j, _ in tr]], np.array([o for _, o in tr]),
                                            C[train_idx], prompt_embeddings(ti.encoder))
    fit_s = time.perf_counter() - t
    test_ids = np.array(sorted(order[-args.holdout:]), np.int64)
    ti.set_vectors("bridge", test_ids, bridge.project(X[test_ids], C[test_ids]))
    sub_ids = [ds.db_ids[i] for i in test_ids]
    rel = [ds.queries[j].relevant for j in te]
    qte = {"minilm": Q[te]}
    tx = [texts[j] for j in te]
    for methods in (("zeroshot",), ("bridge",), ("zeroshot", "bridge")):
        _, S = ti.score(tx, methods=methods, query_vectors=qte, ids=test_ids)
        print(f"holdout last {args.holdout} ({len(te)} captions), {'+'.join(methods)}:", recall(S, sub_ids, rel))
    print(f"bridge trained on {len(tr)} captions of {len(train_idx)} images in {fit_s:.1f} s")


if __name__ == "__main__":
    main()
