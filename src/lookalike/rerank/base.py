"""The re-ranker contract and the ``RERANKERS`` registry.

A re-ranker is a step after the vector search. Its offline part is derived state of the index,
kept by the index's writer, never by a search:

1. ``fit(ids, vectors)`` once over the database (a fresh build, or a repair).
2. ``update(added_ids, added_vectors, removed_ids)`` in the same batch as every add and remove; it
   returns the ids whose *database* vectors changed (DBA: the neighbours of what came and went).
3. Database-side steps (DBA) set ``transforms_database`` and give ``transform_database(ids)``:
   the vectors the index stores instead of the originals.
4. ``rerank(query, scores, ids, store, context)`` per query: reads only; similarity scores,
   higher is better.
5. ``save(dir)`` / ``load(dir)`` persist the offline part as ``<dir>/rerank_<name>.npz``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lookalike.store.base import VectorStore
from lookalike.registry import Registry


class Reranker:
    """Base class: no offline state, database vectors unchanged."""

    name = "reranker"
    transforms_database = False

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults())
        if unknown:
            raise TypeError(f"{self.name}: unknown parameters {sorted(unknown)}")
        self.params = {**self.defaults(), **params}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {}

    def fit(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Build the offline part (no-op by default)."""

    def update(self, added_ids: np.ndarray, added_vectors: np.ndarray,
               removed_ids: np.ndarray) -> np.ndarray:
        """Keep the offline part current; return ids whose database vectors changed."""
        return np.empty(0, np.int64)

    def transform_database(self, ids: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """The vectors to store for ``ids`` (the given ones, unless the step transforms them)."""
        return vectors

    def rerank(self, query: np.ndarray, scores: np.ndarray, ids: np.ndarray,
               store: VectorStore, context: Any = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    def state(self) -> dict[str, np.ndarray]:
        """Arrays of the offline part (empty by default)."""
        return {}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what ``state`` returned."""

    def path(self, directory: Path) -> Path:
        return Path(directory) / f"rerank_{self.name}.npz"

    def save(self, directory: Path) -> None:
        arrays = self.state()
        if arrays:
            Path(directory).mkdir(parents=True, exist_ok=True)
            p = self.path(directory)
            tmp = p.with_name(p.stem + ".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(p)

    def load(self, directory: Path) -> None:
        p = self.path(directory)
        if p.exists():
            with np.load(p) as z:
                self.set_state({k: z[k] for k in z.files})


RERANKERS: Registry[type[Reranker]] = Registry("re-ranker")


def merge_head(head_scores: np.ndarray, head_ids: np.ndarray, scores: np.ndarray,
               ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row: the re-scored head (sorted best first) followed by the rest of ``ids`` in their
    old order, with scores shifted below the head so that the output stays sorted."""
    order = np.argsort(-head_scores, kind="stable")
    hs, hi = head_scores[order].astype(np.float32), head_ids[order]
    rest = ~np.isin(ids, hi) & (ids >= 0)
    rs, ri = scores[rest].astype(np.float64), ids[rest]
    if len(rs):
        finite = np.isfinite(rs)
        if finite.any():
            top = rs[finite].max()
            floor = hs[np.isfinite(hs)].min() if np.isfinite(hs).any() else 0.0
            rs = np.where(finite, rs - top + floor - 1.0, rs)
    out_s = np.concatenate([hs, rs.astype(np.float32)])
    out_i = np.concatenate([hi, ri])
    width = len(ids)
    if len(out_i) < width:  # keep the padding of the input
        pad = width - len(out_i)
        out_s = np.concatenate([out_s, np.full(pad, -np.inf, np.float32)])
        out_i = np.concatenate([out_i, np.full(pad, -1, np.int64)])
    return out_s[:width], out_i[:width]
