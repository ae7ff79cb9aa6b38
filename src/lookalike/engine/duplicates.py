"""Duplicates and copies across an index: groups of images that are the same picture.

    candidates   equal content hashes (exact bytes), equal pixel digests (same pixels), perceptual
                 hashes within a few bits in any of the eight orientations (FAISS binary range
                 search), and each image's nearest global descriptors within a cosine radius (FAISS
                 k-nearest-neighbour search: exact, or for large indexes an HNSW graph over a PCA
                 projection, re-scored exactly); never all pairs in Python
    verification every candidate that is not the same bytes or pixels, and whose hashes agree or
                 whose descriptors are close (``COPY_COSINE``), is lined up with the other image
                 (``features.local.copies``): copies line up block for block, other shots of the
                 same scene do not
    grouping     each group is a centre and the images confirmed against that centre (the most
                 connected image first), so look-alikes never chain unrelated images together

Kinds of match: ``exact`` (same bytes), ``pixels`` (same decoded pixels), ``near`` (the same
picture resized, re-compressed, turned or mirrored: perceptual hashes agree), ``edited`` (a crop,
recolouring, border, caption...: confirmed by alignment only). Reading only: nothing is written to
the index (fingerprints it lacks are computed in memory).
"""
from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import faiss
import numpy as np

from lookalike.errors import BadInputError, ImageError
from lookalike.features.hashes import (ORIENTATIONS, dihedral_phashes, from_bytes, hamming, inverse_orientation,
                                      pixel_digest)
from lookalike.features.local import copies
from lookalike.io import load_image

if TYPE_CHECKING:
    from lookalike.engine.index import Index

log = logging.getLogger(__name__)

KINDS = ("exact", "pixels", "near", "edited")
# which kinds a preset reports, and the verified score (``features.local.copies``) they need; 0.9992
# chosen on half of the copy benchmark's scenes (BENCHMARKS.md)
PRESETS: dict[str, dict[str, Any]] = {
    "exact": {"kinds": ("exact", "pixels"), "threshold": 1.0},
    "near": {"kinds": ("exact", "pixels", "near"), "threshold": 0.9992},
    "edited": {"kinds": KINDS, "threshold": 0.9992},
}
KEEP_POLICIES = ("resolution", "size", "oldest", "newest", "shortest-path")
PHASH_RADIUS = 10  # bits (of 64): perceptual-hash candidates
NEAR_BITS = 8  # at most this many bits apart in the best orientation: a near-duplicate
DESCRIPTOR_RADIUS = 0.6  # cosine: descriptor candidates (copies of deep descriptors sit far above)
# descriptor cosine from which a candidate whose hashes disagree is aligned, per pipeline (chosen on
# half of the copy benchmark's scenes, BENCHMARKS.md); pipelines not named align every candidate
# (a colour descriptor, say, is not meant to survive a recolouring)
COPY_COSINE: dict[str, float] = {"gem": 0.65}
PER_IMAGE = 20  # descriptor candidates kept per image (the most similar)
EXACT_SEARCH_UP_TO = 20_000  # above this many images the descriptor search is approximate
LOW_DIM = 256  # the approximate search's PCA projection
PCA_SAMPLE = 4096  # vectors the projection is trained on
EF_SEARCH = 64  # the graph search's breadth
SPARE = 8  # neighbours found beyond the kept ones, so the exact re-scoring can reorder them
PREPARED_KEPT = 500  # images kept ready for alignment in memory
LOAD_SIDE = 640  # images are read at most this large for alignment
# _INVERSE[k]: the orientation that undoes ORIENTATIONS[k]
_INVERSE = np.array([ORIENTATIONS.index(inverse_orientation(o)) for o in ORIENTATIONS])


@dataclass
class Member:
    id: int
    path: str
    width: int
    height: int
    size: int
    mtime: float
    action: str  # "keep" or "remove" (the suggestion)
    kind: str | None = None  # the match with the group's centre (None for the centre)
    score: float | None = None
    reference: bool = False


@dataclass
class Pair:
    a: int
    b: int
    kind: str
    score: float
    how: str = ""


@dataclass
class Group:
    members: list[Member]
    pairs: list[Pair]

    @property
    def keep(self) -> list[Member]:
        return [m for m in self.members if m.action == "keep"]

    @property
    def remove(self) -> list[Member]:
        return [m for m in self.members if m.action == "remove"]


@dataclass
class DuplicateReport:
    groups: list[Group]
    preset: str
    threshold: float
    keep: str
    images: int
    candidates: int  # candidate pairs looked at
    verified: int  # pairs checked by alignment
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    skipped: int = 0  # candidate pairs left unaligned (hashes far apart and descriptors not close)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duplicates"] = sum(len(g.remove) for g in self.groups)
        return d

    def pairs(self) -> list[tuple[int, int]]:
        """Every pair of images placed in one group (what the report calls duplicates)."""
        out = []
        for g in self.groups:
            ids = sorted(m.id for m in g.members)
            out += [(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]]
        return out


# -- candidates -----------------------------------------------------------------------------------
def _unique_pairs(ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, *values: np.ndarray,
                  best: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Row-index pairs made unordered (by id) and deduplicated, keeping for each pair the entry
    with the lowest ``best`` (or any, when ``best`` is None): ((m, 2) ids with a < b, *values)."""
    a, b = ids[rows], ids[cols]
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    order = np.lexsort((best, hi, lo)) if best is not None else np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    keep = order[first]
    return (np.stack([lo[first], hi[first]], 1).astype(np.int64), *(v[keep] for v in values))


def descriptor_pairs(ids: np.ndarray, vecs: np.ndarray, radius: float, per_image: int = PER_IMAGE,
                     exact_up_to: int = EXACT_SEARCH_UP_TO) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose inner product is at least ``radius`` (unit rows: cosine), each row's
    ``per_image`` most similar: ((m, 2) ids with a < b, (m,) cosines). A k-nearest-neighbour search
    in blocks (k bounds the work however tight the collection's clusters): exact below
    ``exact_up_to`` rows; above, see ``_approximate_pairs``."""
    n, d = vecs.shape
    empty = (np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    if n < 2:
        return empty
    vecs = np.ascontiguousarray(vecs, np.float32)
    ids = np.asarray(ids, np.int64)
    if n > exact_up_to:
        rows, cols, sims = _approximate_pairs(vecs, radius, per_image)
    else:
        index = faiss.IndexFlatIP(d)
        index.add(vecs)
        k = min(n, per_image + 1)
        parts = []
        for s in range(0, n, 4096):
            e = min(n, s + 4096)
            sims, found = index.search(vecs[s:e], k)
            keep = found != np.arange(s, e)[:, None]
            keep &= np.cumsum(keep, axis=1) <= per_image  # the row's most similar others
            keep &= sims >= radius
            r, c = np.nonzero(keep)
            parts.append((r + s, found[r, c], sims[r, c]))
        rows, cols, sims = (np.concatenate(x) for x in zip(*parts))
    if not len(rows):
        return empty
    pairs, cos = _unique_pairs(ids, rows, cols, sims.astype(np.float32), best=-sims)
    return pairs, cos


def _approximate_pairs(vecs: np.ndarray, radius: float, per_image: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, cosines) for large collections: each row's ``per_image + SPARE`` nearest
    neighbours on a graph (HNSW) over a PCA projection (L2 there, which ranks as the cosine does
    for unit rows). The projection's distance bounds the true one from below, so a neighbour
    already too far there is dropped unscored; the others, once per unordered pair, are scored
    exactly, and a pair is kept when it is among the ``per_image`` best of either of its rows."""
    n = len(vecs)
    low = _projected(vecs)
    index = _graph(low)
    k = min(n, per_image + 1 + SPARE)
    a_parts, b_parts = [], []
    for s in range(0, n, 8192):
        e = min(n, s + 8192)
        dist, found = index.search(low[s:e], k)
        r, c = np.nonzero((found >= 0) & (found != np.arange(s, e)[:, None]) & (1 - dist / 2 >= radius - 1e-4))
        a, b = r + s, found[r, c]
        a_parts.append(np.minimum(a, b).astype(np.int32))
        b_parts.append(np.maximum(a, b).astype(np.int32))
    del low, index
    key = np.unique(np.concatenate(a_parts).astype(np.int64) * n + np.concatenate(b_parts))
    a, b = key // n, key % n
    del key
    sims = np.empty(len(a), np.float32)
    for s in range(0, len(a), 8192):  # a sorted: its rows come in order, b's are gathered
        sims[s:s + 8192] = np.einsum("qd,qd->q", vecs[a[s:s + 8192]], vecs[b[s:s + 8192]])
    close = sims >= radius
    a, b, sims = a[close], b[close], sims[close]
    # rank every pair within each of its two rows' lists
    both_row = np.concatenate([a, b])
    both_sim = np.concatenate([sims, sims])
    order = np.lexsort((-both_sim, both_row))
    starts = np.searchsorted(both_row[order], both_row[order], side="left")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - starts
    m = len(a)
    keep = (rank[:m] < per_image) | (rank[m:] < per_image)
    return a[keep], b[keep], sims[keep]


def _projected(vecs: np.ndarray) -> np.ndarray:
    """``vecs`` on their ``LOW_DIM`` principal axes, centred (randomised PCA of a sample: a few
    BLAS products, where a full eigendecomposition of the covariance takes far longer)."""
    n, d = vecs.shape
    if d <= LOW_DIM:
        return vecs
    rng = np.random.default_rng(0)
    x = vecs[np.sort(rng.choice(n, min(n, PCA_SAMPLE), replace=False))]
    mean = x.mean(0)
    x -= mean
    y = x @ rng.standard_normal((d, LOW_DIM + 32), dtype=np.float32)
    y, _r = np.linalg.qr(x @ (x.T @ y))  # one power iteration sharpens the leading axes
    axes = np.linalg.svd(y.T @ x, full_matrices=False)[2][:LOW_DIM].T.astype(np.float32)
    out = np.empty((n, LOW_DIM), np.float32)
    for s in range(0, n, 16384):
        out[s:s + 16384] = (vecs[s:s + 16384] - mean) @ axes
    return out


def _graph(x: np.ndarray) -> Any:
    """An HNSW graph (L2) over ``x``: no training, and a search whose cost does not depend on
    how unevenly the collection clusters (an inverted file's lists grow with its clusters)."""
    index = faiss.IndexHNSWFlat(x.shape[1], 32)  # 16 links lose near-copies among tight clusters
    index.hnsw.efConstruction = 40
    index.add(x)
    index.hnsw.efSearch = EF_SEARCH
    return index


def phash_pairs(ids: np.ndarray, phashes: np.ndarray, radius: int = PHASH_RADIUS,
                both_ways_up_to: int = EXACT_SEARCH_UP_TO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose perceptual hashes are at most ``radius`` bits apart in some orientation:
    ((m, 2) ids with a < b, (m,) bits, (m,) k) where b looks like a turned by ``ORIENTATIONS[k]``.
    ``phashes`` (n, 8) uint64. Exact (FAISS binary search of every orientation against the
    upright hashes, in blocks). Up to ``both_ways_up_to`` images each pair is compared both
    ways (a turned against b, and b turned against a; pHash is not exactly equivariant); above,
    each pair once, the earlier row turned (half the work)."""
    n = len(ids)
    ids = np.asarray(ids, np.int64)
    if n < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = np.ascontiguousarray(phashes, np.uint64).view(np.uint8).reshape(n, 8, 8)
    upright = np.ascontiguousarray(codes[:, 0])
    rows_out, cols_out, bits_out, orient_out = [], [], [], []
    both = n <= both_ways_up_to
    step = n if both else 8192
    for s in range(0, n, step):
        e = min(n, s + step)
        lo = 0 if both else s  # one way: only the later rows are searched
        index = faiss.IndexBinaryFlat(64)
        index.add(upright[lo:])
        for k in range(8):
            lims, dist, found = index.range_search(np.ascontiguousarray(codes[s:e, k]), radius + 1)
            r = np.repeat(np.arange(s, e), np.diff(lims.astype(np.int64)))
            c = found.astype(np.int64) + lo
            keep = c != r if both else c > r
            rows_out.append(r[keep])
            cols_out.append(c[keep])
            bits_out.append(dist[keep].astype(np.int64))
            orient_out.append(np.full(int(keep.sum()), k, np.int64))
    rows, cols, bits, orient = (np.concatenate(x) for x in (rows_out, cols_out, bits_out, orient_out))
    # upright(c) ~ orientation k of r: c looks like r turned by k; seen from the smaller id, invert
    flip = ids[rows] > ids[cols]
    orient = np.where(flip, _INVERSE[orient], orient)
    return _unique_pairs(ids, rows, cols, bits, orient, best=bits * 8 + orient)



# -- the search -----------------------------------------------------------------------------------
class _Images:
    """Images read and prepared for alignment, a bounded number kept."""

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self.kept: OrderedDict[int, copies.Prepared | None] = OrderedDict()

    def get(self, image_id: int) -> copies.Prepared | None:
        if image_id in self.kept:
            self.kept.move_to_end(image_id)
            return self.kept[image_id]
        try:
            prep = copies.prepare(load_image(self.paths[image_id], max_side=LOAD_SIDE))
        except (ImageError, KeyError, OSError):
            prep = None
        self.kept[image_id] = prep
        while len(self.kept) > PREPARED_KEPT:
            self.kept.popitem(last=False)
        return prep


def _fingerprints(ix: "Index", rows: dict[int, Any]) -> tuple[dict[int, str], dict[int, np.ndarray]]:
    """Pixel digests and pHashes of every image: stored ones, the rest computed in memory."""
    stored = ix.catalog.hashes()
    pixels: dict[int, str] = {}
    phashes: dict[int, np.ndarray] = {}
    missing = []
    for i in rows:
        got = stored.get(i)
        if got is None:
            missing.append(i)
        else:
            pixels[i], phashes[i] = got[0], from_bytes(got[1])
    if missing:
        log.info("computing the perceptual hashes of %d images indexed without them (in memory)...", len(missing))
    for i in missing:
        try:
            rgb = load_image(rows[i].path, max_side=1024)
        except ImageError:
            continue
        pixels[i], phashes[i] = pixel_digest(rgb), dihedral_phashes(rgb)
    return pixels, phashes


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _rank_for_keep(m: Member, policy: str) -> tuple:
    if policy == "resolution":
        return (-m.width * m.height, -m.size, len(m.path), m.path)
    if policy == "size":
        return (-m.size, -m.width * m.height, len(m.path), m.path)
    if policy == "oldest":
        return (m.mtime, len(m.path), m.path)
    if policy == "newest":
        return (-m.mtime, len(m.path), m.path)
    return (len(m.path), m.path)  # shortest-path


def check_options(preset: str, threshold: float | None, keep: str) -> float:
    if preset not in PRESETS:
        raise BadInputError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    if keep not in KEEP_POLICIES:
        raise BadInputError(f"unknown keep policy {keep!r} (known: {', '.join(KEEP_POLICIES)})")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise BadInputError(f"the threshold must lie between 0 and 1 (got {threshold})")
    return float(PRESETS[preset]["threshold"] if threshold is None else threshold)


def find_duplicates(ix: "Index", preset: str = "edited", threshold: float | None = None, keep: str = "resolution",
                    reference: Iterable[str | os.PathLike] = (), descriptor_radius: float | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    all_scores: bool = False, copy_cosine: float | None = None) -> DuplicateReport:
    """Groups of duplicates among the indexed images (see the module's docstring). ``threshold``
    (the verified score a copy needs) defaults to the preset's; ``keep`` picks the suggested file
    to keep; files under ``reference`` folders are always kept. ``all_scores`` keeps every
    verified pair (with scores below the threshold, and its cosine and hash bits) in
    ``report.timings['pairs']`` for curves. ``copy_cosine`` (default: the pipeline's ``COPY_COSINE``):
    candidates whose hashes disagree are aligned only from this descriptor cosine up."""
    t0 = time.perf_counter()
    thr = check_options(preset, threshold, keep)
    kinds = PRESETS[preset]["kinds"]
    refs = [os.path.abspath(os.fspath(r)) for r in reference]
    timings: dict[str, float] = {}
    with ix.lock.read():
        rows = ix.catalog.rows(ix.catalog.ok_ids().tolist())
        ids = np.array(sorted(rows), np.int64)
        edges: dict[tuple[int, int], Pair] = {}
        # exact bytes
        by_hash: dict[str, list[int]] = {}
        for i in ids.tolist():
            if rows[i].hash:
                by_hash.setdefault(rows[i].hash, []).append(i)
        for same in by_hash.values():
            for k, a in enumerate(same):
                for b in same[k + 1:]:
                    edges[(a, b)] = Pair(a, b, "exact", 1.0, "content hash")
        pixels, phashes = _fingerprints(ix, rows)
        by_pixels: dict[str, list[int]] = {}
        for i, p in pixels.items():
            by_pixels.setdefault(p, []).append(i)
        for same in by_pixels.values():
            same.sort()
            for k, a in enumerate(same):
                for b in same[k + 1:]:
                    edges.setdefault((a, b), Pair(a, b, "pixels", 1.0, "pixel digest"))
        timings["exact"] = time.perf_counter() - t0
        candidates: dict[tuple[int, int], dict[str, Any]] = {}
        if preset != "exact":
            t1 = time.perf_counter()
            hashed = np.array(sorted(phashes), np.int64)
            if len(hashed):
                pairs, bits, orient = phash_pairs(hashed, np.stack([phashes[i] for i in hashed.tolist()]))
                for (a, b), nb, o in zip(pairs.tolist(), bits.tolist(), orient.tolist()):
                    candidates.setdefault((a, b), {})["phash"] = (nb, o)
            timings["phash"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            radius = DESCRIPTOR_RADIUS if descriptor_radius is None else descriptor_radius
            vec_ids, vecs = _search_vectors(ix, ids)
            pairs, cos = descriptor_pairs(vec_ids, vecs, radius)
            for (a, b), c in zip(pairs.tolist(), cos.tolist()):
                candidates.setdefault((a, b), {})["cosine"] = c
            row_of = {i: k for k, i in enumerate(vec_ids.tolist())}
            for (a, b), info in candidates.items():  # hash candidates: their cosine too
                if "cosine" not in info and a in row_of and b in row_of:
                    info["cosine"] = float(vecs[row_of[a]] @ vecs[row_of[b]])
            del vecs
            timings["descriptors"] = time.perf_counter() - t1
    n_candidates = len(candidates) + len(edges)
    floor = COPY_COSINE.get(ix.spec, -1.0) if copy_cosine is None else copy_cosine
    scored: list[Pair] = []
    extra: list[dict[str, Any]] = []
    skipped = 0
    if candidates:
        t1 = time.perf_counter()
        images = _Images({i: r.path for i, r in rows.items()})
        todo = []
        for a, b in sorted(k for k in candidates if k not in edges):
            info = candidates[(a, b)]
            bits, orient = info.get("phash", (None, None))
            if bits is None and a in phashes and b in phashes:
                d = hamming(phashes[a], phashes[b][0])  # b's upright hash against a's eight orientations
                orient = int(np.argmin(d))
                bits = int(d[orient])
            if worth_aligning(bits, info.get("cosine"), floor, "edited" in kinds):
                todo.append((a, b, bits, orient, info.get("cosine")))
            else:
                skipped += 1
        for n, (a, b, bits, orient, cosine) in enumerate(todo):
            pa, pb = images.get(a), images.get(b)
            if pa is None or pb is None:
                continue
            check = copies.compare(pa, pb, ORIENTATIONS[orient] if bits is not None and bits <= NEAR_BITS else None)
            kind = "near" if bits is not None and bits <= NEAR_BITS else "edited"
            pair = Pair(a, b, kind, round(check.score, 4), check.how)
            scored.append(pair)
            extra.append({"cosine": None if cosine is None else round(cosine, 4), "bits": bits})
            if progress:
                progress(n + 1, len(todo))
        timings["verify"] = time.perf_counter() - t1
    for p in scored:
        if p.score >= thr and p.kind in kinds:
            edges[(p.a, p.b)] = p
    edges = {k: e for k, e in edges.items() if e.kind in kinds}
    groups = _group(edges, rows, keep, refs)
    if all_scores:
        timings["pairs"] = ([{**asdict(p), **x} for p, x in zip(scored, extra)]  # type: ignore[assignment]
                            + [asdict(e) for e in edges.values() if e.kind in ("exact", "pixels")])
    return DuplicateReport(groups, preset, thr, keep, len(ids), n_candidates, len(scored),
                           time.perf_counter() - t0, timings, skipped)


def worth_aligning(bits: int | None, cosine: float | None, floor: float, edited: bool = True) -> bool:
    """Whether a candidate pair is lined up at all: its hashes agree (``NEAR_BITS``), or edited
    copies are wanted and its descriptors are close enough (``cosine`` at ``floor`` or above; no
    cosine known: aligned)."""
    if bits is not None and bits <= NEAR_BITS:
        return True
    return edited and (cosine is None or cosine >= floor)


def _search_vectors(ix: "Index", ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, unit search vectors) of every indexed image, prepared as the pipeline searches them."""
    out_ids, out = [], []
    for chunk_ids, raw in ix.catalog.iter_vectors():
        v = np.asarray(ix.pipeline.prepare(raw), np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
        out_ids.append(chunk_ids)
        out.append(v)
    if not out:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    return np.concatenate(out_ids), np.concatenate(out)


def _group(edges: dict[tuple[int, int], Pair], rows: dict[int, Any], keep: str, refs: Sequence[str]) -> list[Group]:
    """Centre-based groups: the image with the most confirmed matches becomes a centre and takes
    every unassigned image confirmed against it; repeated until no edges are left. Every member
    is a confirmed copy of its centre, so a chain of look-alikes never joins unrelated images."""
    adj: dict[int, dict[int, Pair]] = {}
    for (a, b), p in edges.items():
        adj.setdefault(a, {})[b] = p
        adj.setdefault(b, {})[a] = p
    order = sorted(adj, key=lambda i: (-len(adj[i]), -sum(p.score for p in adj[i].values()), i))
    taken: set[int] = set()
    groups: list[Group] = []
    group_of: dict[int, int] = {}
    for c in order:
        if c in taken:
            continue
        members = [j for j in adj[c] if j not in taken]
        if not members:
            continue
        taken.update([c, *members])
        ids = [c, *sorted(members)]
        mem = []
        for i in ids:
            r = rows[i]
            m = Member(i, r.path, int(r.width or 0), int(r.height or 0), int(r.size or 0), float(r.mtime or 0),
                       "remove", reference=_under(r.path, refs))
            if i != c:
                m.kind, m.score = adj[c][i].kind, adj[c][i].score
            mem.append(m)
        for i in ids:
            group_of[i] = len(groups)
        _suggest(mem, keep)
        groups.append(Group(mem, []))
    for (a, b), p in edges.items():  # each group's pairs, in one pass over the edges
        if a in group_of and group_of[a] == group_of.get(b):
            groups[group_of[a]].pairs.append(p)
    for g in groups:
        g.pairs.sort(key=lambda p: (p.a, p.b))
    groups.sort(key=lambda g: (-len(g.members), g.members[0].path))
    return groups


def _suggest(members: list[Member], policy: str) -> None:
    """One file kept by the policy (among reference files when there are any); every file
    under a reference folder is kept too."""
    pool = [m for m in members if m.reference] or members
    best = min(pool, key=lambda m: _rank_for_keep(m, policy))
    for m in members:
        m.action = "keep" if (m is best or m.reference) else "remove"
