"""Bag of visual words with an inverted file, tf-idf, burstiness handling, multiple assignment
and Hamming embedding (Sivic & Zisserman 2003; Jégou, Douze & Schmid 2008/2009).

Each database descriptor is assigned to its nearest word and stored in that word's posting list
with its HE code. A query descriptor is assigned to up to ``ma`` words (multiple assignment, kept
when within ``ma_ratio`` of the nearest distance). A query/database pair in the same word votes
``idf(w)^2 * exp(-h^2 / sigma^2)`` if their Hamming distance ``h <= he_threshold`` (every pair
votes ``idf(w)^2`` without HE). Burstiness: votes are divided by the square root of the total
vote of the same query descriptor in the same image, and of the same database descriptor.
Image scores are normalised by the tf-idf norms of both images (a cosine).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .keypoints import LocalFeatures
from .vocab import Vocabulary

FILENAME = "bow_index.npz"


@dataclass
class BowParams:
    ma: int = 3  # words per query descriptor
    ma_ratio: float = 1.2  # keep extra words within this factor of the nearest (squared) distance
    he_threshold: int = 24  # max Hamming distance of a vote (of the vocabulary's code length)
    he_sigma: float = 16.0  # vote weight exp(-h^2/sigma^2); <= 0 gives weight 1
    burst: bool = True


class BowIndex:
    """An inverted file over the visual words of database images, addressed by int64 ids."""

    def __init__(self, vocab: Vocabulary, params: BowParams | None = None) -> None:
        self.vocab, self.params = vocab, params or BowParams()
        self._words: dict[int, np.ndarray] = {}
        self._sigs: dict[int, np.ndarray] = {}
        self._built: tuple | None = None

    # -- database side -------------------------------------------------------------------
    def encode(self, feats: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        """Nearest word (n,) int32 and HE code (n,) uint64 of each descriptor."""
        x = feats.float_desc()
        w = self.vocab.assign(x, 1)[0][:, 0]
        return w.astype(np.int32), self.vocab.signatures(x, w)

    def add(self, ids: Sequence[int], feats: Sequence[LocalFeatures]) -> None:
        for i, f in zip(ids, feats):
            i = int(i)
            if i in self._words:
                raise ValueError(f"id {i} is already in the index")
            self._words[i], self._sigs[i] = self.encode(f)
        self._built = None

    def remove(self, ids: Sequence[int]) -> int:
        n = 0
        for i in ids:
            if self._words.pop(int(i), None) is not None:
                self._sigs.pop(int(i))
                n += 1
        self._built = None
        return n

    def ids(self) -> np.ndarray:
        return np.array(sorted(self._words), np.int64)

    def __len__(self) -> int:
        return len(self._words)

    def _build(self) -> tuple:
        """Posting lists sorted by word; idf and per-image tf-idf norms."""
        if self._built is not None:
            return self._built
        ids = np.array(list(self._words), np.int64)
        k = self.vocab.k
        if not len(ids):
            self._built = (ids, np.zeros(k + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint64),
                           np.zeros(k), np.zeros(0))
            return self._built
        words = np.concatenate([self._words[i] for i in ids])
        sigs = np.concatenate([self._sigs[i] for i in ids])
        slots = np.repeat(np.arange(len(ids), dtype=np.int32), [len(self._words[i]) for i in ids])
        order = np.argsort(words, kind="stable")
        words, sigs, slots = words[order], sigs[order], slots[order]
        ptr = np.searchsorted(words, np.arange(k + 1)).astype(np.int64)
        pairs = np.unique(words.astype(np.int64) * len(ids) + slots)
        df = np.bincount(pairs // len(ids), minlength=k)
        idf = np.log(len(ids) / np.maximum(df, 1)).astype(np.float64)
        tf = np.bincount(words.astype(np.int64) * len(ids) + slots, minlength=k * len(ids))
        nz = np.flatnonzero(tf)
        w_of, s_of = nz // len(ids), nz % len(ids)
        tfw = tf[nz].astype(np.float64)
        if self.params.burst:
            tfw = np.sqrt(tfw)
        norms = np.sqrt(np.bincount(s_of, weights=(tfw * idf[w_of]) ** 2, minlength=len(ids)))
        self._built = (ids, ptr, slots, sigs, idf, norms)
        return self._built

    # -- query side ----------------------------------------------------------------------
    def scores(self, feats: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        """Similarity of the query to every database image: (ids (N,), scores (N,) float32)."""
        ids, ptr, slots, sigs, idf, norms = self._build()
        p = self.params
        out = np.zeros(len(ids), np.float64)
        if not len(ids) or not len(feats):
            return ids, out.astype(np.float32)
        x = feats.float_desc()
        ma = max(1, p.ma)
        words, dist = self.vocab.assign(x, ma)
        keep = dist <= dist[:, :1] * p.ma_ratio ** 2 + 1e-12
        keep[:, 0] = True
        qi, col = np.nonzero(keep)
        qw = words[qi, col]
        qsig = np.zeros(len(qi), np.uint64)
        if self.vocab.he_bits:
            for c in range(ma):  # codes depend on the word (per-word medians)
                m = col == c
                qsig[m] = self.vocab.signatures(x[qi[m]], qw[m])
        # expand every (query descriptor, word) to that word's postings
        start, length = ptr[qw], ptr[qw + 1] - ptr[qw]
        total = int(length.sum())
        if total == 0:
            return ids, out.astype(np.float32)
        rep = np.repeat(np.arange(len(qw)), length)
        post = np.arange(total) - np.repeat(np.cumsum(length) - length, length) + start[rep]
        w = idf[qw[rep]] ** 2
        if self.vocab.he_bits:
            h = np.bitwise_count(qsig[rep] ^ sigs[post])
            ok = h <= p.he_threshold
            rep, post, h, w = rep[ok], post[ok], h[ok], w[ok]
            if p.he_sigma > 0:
                w = w * np.exp(-(h.astype(np.float64) ** 2) / p.he_sigma ** 2)
        pos = w > 0
        rep, post, w = rep[pos], post[pos], w[pos]
        slot = slots[post]
        if p.burst and len(w):
            n = len(ids)
            key = qi[rep].astype(np.int64) * n + slot  # same query descriptor, same image
            _, inv = np.unique(key, return_inverse=True)
            w = w * np.sqrt(w / np.bincount(inv, weights=w)[inv])
            _, inv = np.unique(post, return_inverse=True)  # same database descriptor
            w = w * np.sqrt(w / np.bincount(inv, weights=w)[inv])
        out = np.bincount(slot, weights=w, minlength=len(ids))
        qtf = np.bincount(words[:, 0], minlength=self.vocab.k).astype(np.float64)
        if p.burst:
            qtf = np.sqrt(qtf)
        qnorm = np.sqrt(np.sum((qtf * idf) ** 2)) + 1e-12
        out = out / (qnorm * (norms + 1e-12))
        return ids, out.astype(np.float32)

    def search(self, queries: Sequence[LocalFeatures], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query, best first; missing slots are (-inf, -1)."""
        k = max(1, int(k))
        s_out = np.full((len(queries), k), -np.inf, np.float32)
        i_out = np.full((len(queries), k), -1, np.int64)
        for r, q in enumerate(queries):
            ids, s = self.scores(q)
            order = np.argsort(-s, kind="stable")[:k]
            s_out[r, :len(order)], i_out[r, :len(order)] = s[order], ids[order]
        return s_out, i_out

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.vocab.save(directory)
        ids = np.array(list(self._words), np.int64)
        lens = np.array([len(self._words[i]) for i in ids], np.int64)
        cat = lambda d, dt: np.concatenate([d[i] for i in ids]) if len(ids) else np.zeros(0, dt)  # noqa: E731
        tmp = directory / (FILENAME + ".tmp.npz")
        np.savez(tmp, ids=ids, lens=lens, words=cat(self._words, np.int32), sigs=cat(self._sigs, np.uint64),
                 params=json.dumps(asdict(self.params)))
        tmp.replace(directory / FILENAME)

    @classmethod
    def load(cls, directory: Path) -> "BowIndex":
        directory = Path(directory)
        z = np.load(directory / FILENAME)
        idx = cls(Vocabulary.load(directory), BowParams(**json.loads(str(z["params"]))))
        off = np.concatenate([[0], np.cumsum(z["lens"])])
        for j, i in enumerate(z["ids"]):
            idx._words[int(i)] = z["words"][off[j]:off[j + 1]]
            idx._sigs[int(i)] = z["sigs"][off[j]:off[j + 1]]
        return idx
