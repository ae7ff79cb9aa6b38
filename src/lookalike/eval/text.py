"""``lookalike eval`` on text datasets (task "text"): captions rank the database images.

Each caption is embedded in its text spaces (``encoder.query_spaces``: MiniLM and USE for
English, USE for other languages), as a search query would be.

Without ``holdout_last`` nothing is learned: images are ranked zero-shot (ImageNet classes).
With ``holdout_last N`` a bridge per text space (input: descriptor and class probabilities) is
trained on the captions of all but the last N database images (gt.json order) and the captions of
the last N rank those N images (zero-shot + bridge). With the option ``fit_on`` (``--fit-on``, a
dataset of the same images with captions in another language; several separated by commas) the
bridges are trained on those datasets' captions instead: a bridge trained on English captions
answers Chinese queries, and one trained on both languages' captions serves both.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lookalike.config import cache_dir
from lookalike.eval.dataset import Dataset
from lookalike.eval.metrics import ranked_relevance, summarise
from lookalike.pipelines import GEM_DEEP
from lookalike.engine.runners import LocalRunner, describer_key, process_batch
from lookalike.errors import BadInputError
from lookalike.pipelines import PipelineDoc
from lookalike.text.bridge import TextBridge, class_probs
from lookalike.text.classes import prompt_embeddings
from lookalike.text.bridges import bridge_config, store_projection, vector_kind
from lookalike.text.encoder import MINILM, SPACES, encoder_for, query_spaces
from lookalike.text.store import TextIndex

KEYS = ("mAP", "mAP_trapezoid", "P@1", "P@10", "R@1", "R@5", "R@10", "queries", "images_per_s", "query_ms_p50")


def image_features(ds: Dataset, progress: Callable[[int, int], None] | None = None,
                   batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """GeM descriptors (N, 1280, the ``text`` pipeline's) and ImageNet logits (N, 1000) of the db,
    cached by the image files (datasets that share their images, e.g. captions in two languages,
    share the cache)."""
    files = "\n".join(str(Path(p).resolve()) for p in ds.db_paths)
    key = hashlib.sha1(f"{files}|{json.dumps(GEM_DEEP, sort_keys=True)}".encode()).hexdigest()[:16]
    f = cache_dir() / "eval" / f"textfeats-{key}.npz"
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


def text_vectors(texts: list[str], space: str = MINILM) -> np.ndarray:
    """Embeddings of ``texts`` in ``space`` ("minilm" or "use"), cached on disk."""
    if not texts:
        return np.zeros((0, encoder_for(space).dim), np.float32)
    key = hashlib.sha1(("\n".join(texts) + ("" if space == MINILM else "|" + space)).encode()).hexdigest()[:16]
    f = cache_dir() / "text" / f"captions-{key}.npy"
    if f.exists():
        return np.load(f)
    v = encoder_for(space).encode(texts)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.save(f, v)
    return v


def query_vectors(texts: list[str]) -> dict[str, np.ndarray]:
    """Per space, the embeddings of the texts routed to it (zero rows for the others)."""
    out: dict[str, np.ndarray] = {}
    for sp in SPACES:
        rows = [i for i, t in enumerate(texts) if sp in query_spaces(t)]
        v = text_vectors([texts[i] for i in rows], sp)
        full = np.zeros((len(texts), v.shape[1]), np.float32)
        full[rows] = v
        out[sp] = full
    return out


def _caption_pairs(ds: Dataset, exclude: set[str]) -> tuple[list[str], list[str]]:
    """(caption texts, their image ids) of ``ds``'s queries whose image is not in ``exclude``."""
    qs = [q for q in ds.queries if q.text and q.relevant and not set(q.relevant) & exclude]
    return [q.text or "" for q in qs], [q.relevant[0] for q in qs]


def evaluate_text(ds: Dataset, spec: str, options: dict[str, Any], holdout_last: int | None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """R@k etc. of text queries; see the module docstring for what is learned on what."""
    t0 = time.perf_counter()
    X, L = image_features(ds, progress)
    rate = len(X) / max(time.perf_counter() - t0, 1e-9)
    queries = [q for q in ds.queries if q.text]
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
        fit_on = options.get("fit_on")
        train_texts, train_imgs = [], []
        for src in [Dataset.load(p) for p in fit_on.split(",")] if fit_on else [ds]:
            texts, imgs = _caption_pairs(src, test)
            missing = [d for d in set(imgs) if d not in pos]
            if missing:
                raise BadInputError(f"--fit-on {src.root}: {len(missing)} captioned images are not in {ds.name}")
            train_texts += texts
            train_imgs += imgs
        owner = np.array([pos[d] for d in train_imgs])
        queries = [q for q in queries if q.relevant and set(q.relevant) <= test]
        C = class_probs(L)
        train_vecs = query_vectors(train_texts)
        ids = ids[n - holdout_last:]
        for sp in SPACES:
            have = np.array([sp in query_spaces(t) for t in train_texts], bool)
            if not any(sp in query_spaces(q.text or "") for q in queries) or have.sum() < 2:
                continue
            bridge = TextBridge(bridge_config(sp)).fit(X[:n - holdout_last], train_vecs[sp][have], owner[have],
                                                    C[:n - holdout_last], prompt_embeddings(ti.encoder_for(sp)))
            store_projection(ti, vector_kind(sp), ids, bridge, bridge.project(X[ids], C[ids]))
        methods += ("bridge",)
    texts = [q.text or "" for q in queries]
    qv = query_vectors(texts)
    db_ids = [ds.db_ids[i] for i in ids]
    groups: dict[tuple[str, ...], list[int]] = {}
    for j, t in enumerate(texts):
        groups.setdefault(query_spaces(t), []).append(j)
    rels, nrel, times = [], [], []
    for spaces, rows in groups.items():
        for s in range(0, len(rows), 256):
            r = rows[s:s + 256]
            t = time.perf_counter()
            _, S = ti.score([texts[j] for j in r], methods=methods, ids=ids,
                            query_vectors={sp: qv[sp][r] for sp in spaces})
            times += [(time.perf_counter() - t) * 1000 / len(S)] * len(S)
            for j, row in zip(r, S):
                q = queries[j]
                rels.append(ranked_relevance(row, db_ids, set(q.relevant), set(q.junk)))
                nrel.append(len(set(q.relevant) - set(q.junk)))
    res: dict[str, Any] = {k: round(v, 4) for k, v in summarise(rels, nrel).items()}
    res.update(queries=len(queries), images_per_s=round(rate, 2), query_ms_p50=round(float(np.median(times)), 3))
    return {k: res[k] for k in KEYS}
