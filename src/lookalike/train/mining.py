"""Tuples for one epoch: each query gets a random positive of its class and its hardest negatives,
the nearest neighbours of other classes under the current model (one per class)."""
from __future__ import annotations

import numpy as np

from lookalike.store.flat import FlatStore


def mine_tuples(desc: np.ndarray, labels: np.ndarray, queries: np.ndarray, n_neg: int,
                rng: np.random.Generator, pool: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query idx (Q,), positive idx (Q,), negative idx (Q, n_neg)) over the rows of ``desc``.

    Queries without another image of their class are dropped. Negatives are taken from the
    ``pool`` nearest neighbours, at most one per class; random other-class images fill any gap.
    """
    desc = np.ascontiguousarray(desc, np.float32)
    by_class: dict[int, np.ndarray] = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    queries = np.array([q for q in queries if len(by_class[labels[q]]) > 1], np.int64)
    store = FlatStore(desc.shape[1], "ip")
    store.add(np.arange(len(desc), dtype=np.int64), desc)
    _, nn = store.search(desc[queries], min(pool, len(desc)))
    pos = np.empty(len(queries), np.int64)
    neg = np.empty((len(queries), n_neg), np.int64)
    for r, q in enumerate(queries):
        same = by_class[labels[q]]
        others = same[same != q]
        pos[r] = others[rng.integers(len(others))]
        picked, seen = [], set()
        for j in nn[r]:
            if j < 0 or labels[j] == labels[q] or labels[j] in seen:
                continue
            picked.append(j)
            seen.add(labels[j])
            if len(picked) == n_neg:
                break
        while len(picked) < n_neg:
            j = int(rng.integers(len(desc)))
            if labels[j] != labels[q]:
                picked.append(j)
        neg[r] = picked
    return queries, pos, neg
