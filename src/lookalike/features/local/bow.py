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

from lookalike.features.local.keypoints import LocalFeatures
from lookalike.features.local.vocab import Vocabulary

FILENAME = "bow_index.npz"


@dataclass
class BowParams:
    ma: int = 3  # words per query descriptor
    ma_ratio: float = 1.2  # keep extra words within this factor of the nearest (squared) distance
    he_threshold: int = 24  # max Hamming distance of a vote (of the vocabulary's code length)
    he_sigma: float = 16.0  # vote weight exp(-h^2/sigma^2); <= 0 gives weight 1
    burst: bool = True
    wgc: bool = False  # weak geometric consistency: votes must agree on rotation and scale change
    wgc_angle_bins: int = 8


class BowIndex:
    """An inverted file over the visual words of database images, addressed by int64 ids."""

    def __init__(self, vocab: Vocabulary, params: BowParams | None = None) -> None:
        self.vocab, self.params = vocab, params or BowParams()
        self._words: dict[int, np.ndarray] = {}
        self._sigs: dict[int, np.ndarray] = {}
        self._geo: dict[int, np.ndarray] = {}  # (n, 2) int16: angle bin, 2*log2(scale) rounded
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
            self._geo[i] = self.geometry(f)
        self._built = None

    def remove(self, ids: Sequence[int]) -> int:
        n = 0
        for i in ids:
            if self._words.pop(int(i), None) is not None:
                self._sigs.pop(int(i))
                self._geo.pop(int(i), None)
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
        geo = np.concatenate([self._geo.get(i, np.zeros((len(self._words[i]), 2), np.int16)) for i in ids])
        slots = np.repeat(np.arange(len(ids), dtype=np.int32), [len(self._words[i]) for i in ids])
        order = np.argsort(words, kind="stable")
        words, sigs, slots, self._post_geo = words[order], sigs[order], slots[order], geo[order]
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
        p = self.params
        if not len(self) or not len(feats):
            return self._build()[0], np.zeros(len(self), np.float32)
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
        return self._score(qi, qw, qsig, words[:, 0], self.geometry(feats))

    def scores_encoded(self, words: np.ndarray, sigs: np.ndarray, geo: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``scores`` for a query given as its words (n,), HE codes (n,) and geometry (n, 2)
        (no multiple assignment)."""
        words = np.asarray(words, np.int64)
        return self._score(np.arange(len(words)), words, np.asarray(sigs, np.uint64), words, geo)

    def geometry(self, feats: LocalFeatures) -> np.ndarray:
        """(n, 2) int16 per keypoint: orientation bin and 2*log2(size) rounded (for WGC)."""
        k = feats.kpts
        nb = self.params.wgc_angle_bins
        ang = np.floor(np.mod(k[:, 3], 360.0) / (360.0 / nb)).astype(np.int16) % nb
        lsc = np.rint(2 * np.log2(np.maximum(k[:, 2], 1e-3))).astype(np.int16)
        return np.stack([ang, lsc], axis=1)

    def _score(self, qi: np.ndarray, qw: np.ndarray, qsig: np.ndarray, qwords: np.ndarray,
               qgeo: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Votes of query descriptors ``qi`` in words ``qw`` with codes ``qsig``; ``qwords`` (one
        word per query descriptor) gives the query's tf-idf norm."""
        ids, ptr, slots, sigs, idf, norms = self._build()
        p = self.params
        out = np.zeros(len(ids), np.float64)
        if not len(ids) or not len(qw):
            return ids, out.astype(np.float32)
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
        if p.wgc and qgeo is not None and len(w):
            out = self._wgc(qgeo[qi[rep]], self._post_geo[post], slot, w, len(ids))
        else:
            out = np.bincount(slot, weights=w, minlength=len(ids))
        qtf = np.bincount(qwords, minlength=self.vocab.k).astype(np.float64)
        if p.burst:
            qtf = np.sqrt(qtf)
        qnorm = np.sqrt(np.sum((qtf * idf) ** 2)) + 1e-12
        out = out / (qnorm * (norms + 1e-12))
        return ids, out.astype(np.float32)

    def _wgc(self, qg: np.ndarray, dg: np.ndarray, slot: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
        """Per image, the votes of the dominant rotation bin and of the dominant scale-change bin;
        the image scores the smaller of the two (Jégou et al. 2008)."""
        nb = self.params.wgc_angle_bins
        da = (qg[:, 0] - dg[:, 0]) % nb
        ds = np.clip(qg[:, 1] - dg[:, 1], -8, 8) + 8
        by_angle = np.bincount(slot.astype(np.int64) * nb + da, weights=w, minlength=n * nb).reshape(n, nb)
        by_scale = np.bincount(slot.astype(np.int64) * 17 + ds, weights=w, minlength=n * 17).reshape(n, 17)
        # neighbouring bins count too (a rotation near a bin border splits its votes)
        by_angle = by_angle + np.roll(by_angle, 1, axis=1)
        by_scale = by_scale + np.pad(by_scale, ((0, 0), (1, 0)))[:, :17]
        return np.minimum(by_angle.max(axis=1), by_scale.max(axis=1))

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
        geo = {i: self._geo.get(i, np.zeros((len(self._words[i]), 2), np.int16)) for i in ids.tolist()}
        np.savez(tmp, ids=ids, lens=lens, words=cat(self._words, np.int32), sigs=cat(self._sigs, np.uint64),
                 geo=np.concatenate([geo[i] for i in ids.tolist()]) if len(ids) else np.zeros((0, 2), np.int16),
                 params=json.dumps(asdict(self.params)))
        tmp.replace(directory / FILENAME)

    @classmethod
    def load(cls, directory: Path) -> "BowIndex":
        directory = Path(directory)
        z = np.load(directory / FILENAME)
        idx = cls(Vocabulary.load(directory), BowParams(**json.loads(str(z["params"]))))
        words, sigs, geo = z["words"], z["sigs"], z["geo"]  # read each array once
        off = np.concatenate([[0], np.cumsum(z["lens"])])
        for j, i in enumerate(z["ids"].tolist()):
            idx._words[i] = words[off[j]:off[j + 1]]
            idx._sigs[i] = sigs[off[j]:off[j + 1]]
            idx._geo[i] = geo[off[j]:off[j + 1]]
        return idx
