"""Duplicates and copies across an index: groups of images that are the same picture.

    candidates   equal content hashes (exact bytes), equal pixel digests (same pixels), perceptual
                 hashes within a few bits in any of the eight orientations (FAISS binary range
                 search), and global descriptors within a cosine radius (FAISS range search; an
                 inverted file over a sample-trained quantiser for large indexes); never all pairs
    verification every candidate that is not the same bytes or pixels is lined up with the other
                 image (``features.local.copies``): copies line up block for block, other shots of
                 the same scene do not
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
from lookalike.features.hashes import ORIENTATIONS, dihedral_phashes, from_bytes, hamming, pixel_digest
from lookalike.features.local import copies
from lookalike.io import load_image

if TYPE_CHECKING:
    from lookalike.engine.index import Index

log = logging.getLogger(__name__)

KINDS = ("exact", "pixels", "near", "edited")
PRESETS: dict[str, dict[str, Any]] = {  # which kinds a preset reports, and the verified score they need
    "exact": {"kinds": ("exact", "pixels"), "threshold": 1.0},
    "near": {"kinds": ("exact", "pixels", "near"), "threshold": 0.985},
    "edited": {"kinds": KINDS, "threshold": 0.985},
}
KEEP_POLICIES = ("resolution", "size", "oldest", "newest", "shortest-path")
PHASH_RADIUS = 10  # bits (of 64): perceptual-hash candidates
NEAR_BITS = 8  # at most this many bits apart in the best orientation: a near-duplicate
DESCRIPTOR_RADIUS = 0.6  # cosine: descriptor candidates (copies of deep descriptors sit far above)
PER_IMAGE = 20  # descriptor candidates kept per image (the most similar)
SMALL_HASH_SEARCH = 256  # up to this many images the hashes are compared in numpy (no thread start-up)
EXACT_SEARCH_UP_TO = 20_000  # above this many images the descriptor range search uses an inverted file
PREPARED_KEPT = 500  # images kept ready for alignment in memory
LOAD_SIDE = 640  # images are read at most this large for alignment


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
def descriptor_pairs(ids: np.ndarray, vecs: np.ndarray, radius: float, per_image: int = PER_IMAGE,
                     exact_up_to: int = EXACT_SEARCH_UP_TO) -> dict[tuple[int, int], float]:
    """Pairs of rows whose inner product is at least ``radius`` (unit rows: cosine), at most
    ``per_image`` per row, by FAISS range search: exact below ``exact_up_to`` rows, else over an
    inverted file (sqrt(n) lists, trained on a sample; 8 probed) holding 8-bit scalar
    codes, the pairs found re-scored exactly."""
    n, d = vecs.shape
    if n < 2:
        return {}
    vecs = np.ascontiguousarray(vecs, np.float32)
    if n <= exact_up_to:
        index: Any = faiss.IndexFlatIP(d)
        index.add(vecs)
    else:
        nlist = int(min(4096, max(64, np.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        quantizer_training = faiss.ClusteringParameters()
        quantizer_training.niter = 10  # coarse cells need not be good k-means: 8 are probed
        index.cp = quantizer_training
        index.train(vecs[rng.choice(n, min(n, 39 * nlist), replace=False)])
        index.add(vecs)
        index.nprobe = 8
    out: dict[tuple[int, int], float] = {}
    step = 2048
    for s in range(0, n, step):
        q = vecs[s:s + step]
        lims, dist, found = index.range_search(q, radius * (0.97 if n > exact_up_to else 1.0))
        for r in range(len(q)):
            lo, hi = lims[r], lims[r + 1]
            js, ds = found[lo:hi], dist[lo:hi]
            row = s + r
            keep = js != row
            js, ds = js[keep], ds[keep]
            if len(js) > per_image:
                top = np.argpartition(-ds, per_image)[:per_image]
                js, ds = js[top], ds[top]
            if n > exact_up_to and len(js):
                ds = vecs[js] @ vecs[row]
                js, ds = js[ds >= radius], ds[ds >= radius]
            for j, v in zip(js.tolist(), ds.tolist()):
                a, b = (int(ids[row]), int(ids[j])) if ids[row] < ids[j] else (int(ids[j]), int(ids[row]))
                if v > out.get((a, b), -np.inf):
                    out[(a, b)] = float(v)
    return out


def phash_pairs(ids: np.ndarray, phashes: np.ndarray, radius: int = PHASH_RADIUS) -> dict[tuple[int, int], tuple[int, int]]:
    """Pairs whose perceptual hashes are at most ``radius`` bits apart in some orientation:
    (a, b) -> (bits, k) where b looks like a turned by ``ORIENTATIONS[k]``. ``phashes`` (n, 8)
    uint64; FAISS binary range search of every orientation against the upright hashes."""
    n = len(ids)
    if n < 2:
        return {}
    if n <= SMALL_HASH_SEARCH:
        return _phash_pairs_small(ids, phashes, radius)
    upright = np.ascontiguousarray(phashes[:, 0]).view(np.uint8).reshape(n, 8)
    index = faiss.IndexBinaryFlat(64)
    index.add(upright)
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for k in range(8):
        q = np.ascontiguousarray(phashes[:, k]).view(np.uint8).reshape(n, 8)
        lims, dist, found = index.range_search(q, radius + 1)  # FAISS keeps distances below the radius
        for row in range(n):
            for j, bits in zip(found[lims[row]:lims[row + 1]].tolist(), dist[lims[row]:lims[row + 1]].tolist()):
                if j == row:
                    continue
                # upright(j) ~ orientation k of row: j looks like row turned by k
                a, b = int(ids[row]), int(ids[j])
                key, orient = ((a, b), k) if a < b else ((b, a), _inverse(k))
                if key not in out or bits < out[key][0]:
                    out[key] = (int(bits), orient)
    return out


def _phash_pairs_small(ids: np.ndarray, phashes: np.ndarray, radius: int) -> dict[tuple[int, int], tuple[int, int]]:
    out: dict[tuple[int, int], tuple[int, int]] = {}
    table = np.unpackbits(np.ascontiguousarray(phashes).view(np.uint8).reshape(len(ids), 8, 8), axis=2)
    upright = table[:, 0].reshape(len(ids), 64).astype(np.float32)
    for k in range(8):
        q = table[:, k].reshape(len(ids), 64).astype(np.float32)
        bits = q.sum(1)[:, None] + upright.sum(1)[None, :] - 2 * (q @ upright.T)  # Hamming distances
        for row, j in zip(*np.nonzero(bits <= radius)):
            if row == j:
                continue
            a, b = int(ids[row]), int(ids[j])
            d = int(round(bits[row, j]))
            key, orient = ((a, b), k) if a < b else ((b, a), _inverse(k))
            if key not in out or d < out[key][0]:
                out[key] = (d, orient)
    return out


def _inverse(k: int) -> int:
    name = ORIENTATIONS[k]
    return ORIENTATIONS.index({"rot90": "rot270", "rot270": "rot90"}.get(name, name))


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
                    all_scores: bool = False) -> DuplicateReport:
    """Groups of duplicates among the indexed images (see the module's docstring). ``threshold``
    (the verified score a copy needs) defaults to the preset's; ``keep`` picks the suggested file
    to keep; files under ``reference`` folders are always kept. ``all_scores`` keeps every
    verified pair (with scores below the threshold) in ``report.timings['pairs']`` for curves."""
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
                for key, (bits, orient) in phash_pairs(hashed, np.stack([phashes[i] for i in hashed.tolist()])).items():
                    candidates.setdefault(key, {})["phash"] = (bits, orient)
            timings["phash"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            radius = DESCRIPTOR_RADIUS if descriptor_radius is None else descriptor_radius
            for key, cos in descriptor_pairs(*_search_vectors(ix, ids), radius).items():
                candidates.setdefault(key, {})["cosine"] = cos
            timings["descriptors"] = time.perf_counter() - t1
    n_candidates = len(candidates) + len(edges)
    scored: list[Pair] = []
    if candidates:
        t1 = time.perf_counter()
        images = _Images({i: r.path for i, r in rows.items()})
        todo = sorted(k for k in candidates if k not in edges)
        for n, (a, b) in enumerate(todo):
            info = candidates[(a, b)]
            bits, orient = info.get("phash", (None, None))
            if bits is None and a in phashes and b in phashes:
                d = hamming(phashes[a], phashes[b][0])  # b's upright hash against a's eight orientations
                orient = int(np.argmin(d))
                bits = int(d[orient])
            pa, pb = images.get(a), images.get(b)
            if pa is None or pb is None:
                continue
            check = copies.compare(pa, pb, ORIENTATIONS[orient] if bits is not None and bits <= NEAR_BITS else None)
            kind = "near" if bits is not None and bits <= NEAR_BITS else "edited"
            pair = Pair(a, b, kind, round(check.score, 4), check.how)
            scored.append(pair)
            if progress:
                progress(n + 1, len(todo))
        timings["verify"] = time.perf_counter() - t1
    for p in scored:
        if p.score >= thr and p.kind in kinds:
            edges[(p.a, p.b)] = p
    edges = {k: e for k, e in edges.items() if e.kind in kinds}
    groups = _group(edges, rows, keep, refs)
    if all_scores:
        timings["pairs"] = [asdict(p) for p in scored] + [asdict(e) for e in edges.values() if e.kind in ("exact", "pixels")]  # type: ignore[assignment]
    return DuplicateReport(groups, preset, thr, keep, len(ids), n_candidates, len(scored),
                           time.perf_counter() - t0, timings)


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
    groups = []
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
        inside = set(ids)
        pairs = [p for (a, b), p in edges.items() if a in inside and b in inside]
        _suggest(mem, keep)
        groups.append(Group(mem, sorted(pairs, key=lambda p: (p.a, p.b))))
    groups.sort(key=lambda g: (-len(g.members), g.members[0].path))
    return groups


def _suggest(members: list[Member], policy: str) -> None:
    """One file kept by the policy (among reference files when there are any); every file
    under a reference folder is kept too."""
    pool = [m for m in members if m.reference] or members
    best = min(pool, key=lambda m: _rank_for_keep(m, policy))
    for m in members:
        m.action = "keep" if (m is best or m.reference) else "remove"
