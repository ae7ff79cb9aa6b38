"""``BowStore``: bag-of-words rows (``features.local.pipes``) kept in an inverted file, searched
with tf-idf, Hamming embedding, burstiness and weak geometric consistency, behind the store contract."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.features.local.bow import BowIndex, BowParams
from lookalike.features.local.pipes import decode_row
from lookalike.store.base import VectorStore, as_ids

MAGIC = b"PK"  # saved as an .npz (a zip file)


class _Vocab:
    """Stand-in vocabulary for a ``BowIndex`` fed with encoded rows (only ``k`` and ``he_bits``)."""

    def __init__(self, k: int, he_bits: int) -> None:
        self.k, self.he_bits = k, he_bits


class BowStore(VectorStore):
    """A ``VectorStore`` over encoded rows: an inverted file scored with tf-idf, HE and burstiness."""

    metric = "ip"

    def __init__(self, dim: int, k: int, he_bits: int, params: BowParams | None = None) -> None:
        self.dim, self.k, self.he_bits = dim, k, he_bits
        self.index = BowIndex(_Vocab(k, he_bits), params or BowParams(ma=1, wgc=True))  # type: ignore[arg-type]
        self._rows: dict[int, np.ndarray] = {}

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = as_ids(ids)
        for i, row in zip(ids.tolist(), np.atleast_2d(vectors)):
            w, s, g = decode_row(row)
            if i in self.index._words:
                raise ValueError(f"id {i} is already in the store")
            self.index._words[i], self.index._sigs[i], self.index._geo[i] = w, s, g
            self._rows[i] = np.asarray(row, np.float32)
        self.index._built = None

    def remove(self, ids: np.ndarray) -> int:
        ids = as_ids(ids).tolist()
        for i in ids:
            self._rows.pop(i, None)
        return self.index.remove(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(queries, k, None)

    def search_within(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverted file scores every image sharing a word with the query; those outside
        ``ids`` are left out before the top k are taken."""
        return self._search(queries, k, as_ids(ids))

    def _search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, int(k))
        rows = np.atleast_2d(queries)
        s_out = np.full((len(rows), k), -np.inf, np.float32)
        i_out = np.full((len(rows), k), -1, np.int64)
        for r, row in enumerate(rows):
            ids, s = self.index.scores_encoded(*decode_row(row))
            if allowed is not None:
                keep = np.isin(ids, allowed)
                ids, s = ids[keep], s[keep]
            order = np.argsort(-s, kind="stable")[:k]
            s_out[r, :len(order)], i_out[r, :len(order)] = s[order], ids[order]
        return s_out, i_out

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return np.stack([self._rows[i] for i in as_ids(ids).tolist()]) if len(ids) else \
            np.zeros((0, self.dim), np.float32)

    def ids(self) -> np.ndarray:
        return self.index.ids()

    def save(self, path: Path) -> None:
        path = Path(path)
        ids = np.array(sorted(self._rows), np.int64)
        rows = self.reconstruct(ids)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, ids=ids, rows=rows, meta=np.array([self.dim, self.k, self.he_bits]))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "BowStore":
        with np.load(Path(path), allow_pickle=False) as z:
            dim, k, bits = (int(v) for v in z["meta"])
            store = cls(dim, k, bits)
            store.add(z["ids"], z["rows"])
        return store

    def __len__(self) -> int:
        return len(self._rows)
