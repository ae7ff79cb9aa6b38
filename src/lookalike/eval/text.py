"""``lookalike eval`` on text datasets (task "text"): captions rank the database images.

Without ``holdout_last`` nothing is learned: images are ranked zero-shot (ImageNet classes).
With ``holdout_last N`` the bridge (input: descriptor and class probabilities) is trained on the
captions of all but the last N database images (gt.json order) and the captions of the last N
rank those N images (zero-shot + bridge).
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable

import numpy as np

from lookalike.errors import BadInputError

from lookalike.config import cache_dir
from lookalike.eval.dataset import Dataset
from lookalike.eval.metrics import ranked_relevance, summarise
from lookalike.pipelines import GEM_DEEP
from lookalike.engine.runners import LocalRunner, describer_key, process_batch
from lookalike.pipelines import PipelineDoc
from lookalike.text.bridge import BridgeConfig, TextBridge, class_probs
from lookalike.text.classes import prompt_embeddings
from lookalike.text.store import TextIndex

KEYS = ("mAP", "P@1", "P@10", "R@1", "R@5", "R@10", "queries", "images_per_s", "query_ms_p50")


def image_features(ds: Dataset, progress: Callable[[int, int], None] | None = None,
                   batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """GeM descriptors (N, 1280, the ``text`` pipeline's) and ImageNet logits (N, 1000) of the db, cached."""
    key = hashlib.sha1(f"{ds.root.resolve()}|{json.dumps(GEM_DEEP, sort_keys=True)}".encode()).hexdigest()[:16]
    f = cache_dir() / "eval" / f"{ds.name}-textfeats-{key}.npz"
    if f.exists():
        z = np.load(f)
        if len(z["x"]) == len(ds.db_paths):
            return z["x"], z["logits"]
    X = np.zeros((len(ds.db_paths), 1280), np.float32)
    L = np.zeros((len(ds.db_paths), 1000), np.float32)
    paths = [str(p) for p in ds.db_paths]
    batches = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    done = 0
    for results in LocalRunner().map(lambda b: process_batch(describer_key(PipelineDoc("text")), None, b), batches):
        for r in results:
            if r.vector is not None:
                X[done] = r.vector
                L[done] = (r.extra or {}).get("logits", 0.0)
            done += 1
        if progress:
            progress(done, len(paths))
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, x=X, logits=L)
    return X, L


def text_vectors(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings of ``texts``, cached on disk."""
    from lookalike.text.encoder import sentence_encoder

    key = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
    f = cache_dir() / "text" / f"captions-{key}.npy"
    if f.exists():
        return np.load(f)
    v = sentence_encoder().encode(texts)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.save(f, v)
    return v


def evaluate_text(ds: Dataset, spec: str, options: dict[str, Any], holdout_last: int | None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """R@k etc. of text queries; see the module docstring for what is learned on what."""
    t0 = time.perf_counter()
    X, L = image_features(ds, progress)
    rate = len(X) / max(time.perf_counter() - t0, 1e-9)
    queries = [q for q in ds.queries if q.text]
    all_vecs = text_vectors([q.text or "" for q in queries])  # once for every split (cached)
    vec_of = {id(q): v for q, v in zip(queries, all_vecs)}
    n = len(ds.db_ids)
    ids = np.arange(n, dtype=np.int64)
    ti = TextIndex(":memory:")
    ti.set_classes(ids, L)
    methods: tuple[str, ...] = ("zeroshot",)
    if holdout_last:
        if not 0 < holdout_last < n:
            raise BadInputError(f"--holdout-last must be between 1 and {n - 1}")
        test = set(ds.db_ids[n - holdout_last:])
        pos = {d: i for i, d in enumerate(ds.db_ids)}
        train = [(q, pos[q.relevant[0]]) for q in queries if q.relevant and not set(q.relevant) & test]
        queries = [q for q in queries if q.relevant and set(q.relevant) <= test]
        C = class_probs(L)
        bridge = TextBridge(BridgeConfig()).fit(X[:n - holdout_last], np.stack([vec_of[id(q)] for q, _ in train]),
                                                np.array([o for _, o in train]), C[:n - holdout_last],
                                                prompt_embeddings(ti.encoder))
        ids = ids[n - holdout_last:]
        ti.set_vectors("bridge", ids, bridge.project(X[ids], C[ids]))
        methods += ("bridge",)
    texts = [q.text or "" for q in queries]
    Q = np.stack([vec_of[id(q)] for q in queries]) if queries else np.zeros((0, all_vecs.shape[1]), np.float32)
    db_ids = [ds.db_ids[i] for i in ids]
    rels, nrel, times = [], [], []
    for s in range(0, len(texts), 256):
        t = time.perf_counter()
        _, S = ti.score(texts[s:s + 256], methods=methods, query_vectors={"minilm": Q[s:s + 256]}, ids=ids)
        times += [(time.perf_counter() - t) * 1000 / len(S)] * len(S)
        for q, row in zip(queries[s:s + 256], S):
            rels.append(ranked_relevance(row, db_ids, set(q.relevant), set(q.junk)))
            nrel.append(len(set(q.relevant) - set(q.junk)))
    res: dict[str, Any] = {k: round(v, 4) for k, v in summarise(rels, nrel).items()}
    res.update(queries=len(queries), images_per_s=round(rate, 2), query_ms_p50=round(float(np.median(times)), 3))
    return {k: res[k] for k in KEYS}
