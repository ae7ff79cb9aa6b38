"""Benchmark of the local-feature methods on holidays300: sift-bow, orb-bow, sift-vlad, gem(+sv).

Local features are extracted once and cached under ~/.cache/lookalike/local/ (npz per dataset and
detector settings), so reruns only pay for vocabularies and scoring.

    nice -n 10 env PYTHONPATH=src .venv/bin/python bench/local_bench.py --data ../shared/datasets
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from lookalike.config import cache_dir
from lookalike.eval.dataset import Dataset
from lookalike.eval.metrics import ranked_relevance, summarise
from lookalike.features.local.bow import BowIndex, BowParams
from lookalike.features.local.keypoints import LocalFeatures, make_detector
from lookalike.features.local.vocab import Vocabulary

import gem_feats


VOCAB_IMAGES = 400


def load_rgb(path: Path) -> np.ndarray:
    try:
        from lookalike.io import load_image
    except ImportError:  # before io.py exists
        return np.asarray(Image.open(path).convert("RGB"))
    return load_image(path)


def dataset(root: Path, name: str) -> tuple[dict, list[Path]]:
    gt = json.loads((root / name / "gt.json").read_text())
    db_dir = root / name / gt["db_dir"]
    return gt, [db_dir / e["file"] for e in gt["db"]]


def cached_features(tag: str, paths: list[Path], kind: str, max_kpts: int, min_side: int | None,
                    log_every: int = 100) -> list[LocalFeatures]:
    """Detect on every path (or read the cache ``local/{tag}_{kind}_{max_kpts}_{min_side}.npz``)."""
    f = cache_dir() / "local" / f"{tag}_{kind}_{max_kpts}_{min_side}.npz"
    if f.exists():
        z = np.load(f)
        off, kp, de, sz = z["offsets"], z["kpts"], z["desc"], z["sizes"]
        return [LocalFeatures(kind, kp[off[i]:off[i + 1]], de[off[i]:off[i + 1]], tuple(sz[i]))
                for i in range(len(off) - 1)]
    det = make_detector(kind, max_kpts=max_kpts, min_side=min_side)
    feats, t0 = [], time.time()
    for i, p in enumerate(paths):
        feats.append(det.detect(load_rgb(p)))
        if log_every and (i + 1) % log_every == 0:
            print(f"  {tag} {kind}: {i + 1}/{len(paths)} images, {time.time() - t0:.0f} s", flush=True)
    off = np.cumsum([0] + [len(x) for x in feats])
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.stem + ".tmp.npz")
    np.savez(tmp, offsets=off, kpts=np.concatenate([x.kpts for x in feats]),
             desc=np.concatenate([x.desc for x in feats]), sizes=np.array([x.image_size for x in feats]))
    tmp.replace(f)
    return feats


def score_queries(ds: Dataset, fn: Callable[[int], np.ndarray]) -> dict[str, float]:
    """mAP etc. of ``fn(query_index) -> scores over the whole db`` (pessimistic ties)."""
    rels, nrel = [], []
    for qi, q in enumerate(ds.queries):
        rels.append(ranked_relevance(fn(qi), ds.db_ids, set(q.relevant), set(q.junk)))
        nrel.append(len(set(q.relevant) - set(q.junk)))
    return {k: round(v, 4) for k, v in summarise(rels, nrel).items()}


def query_positions(ds: Dataset) -> list[int]:
    pos = {p.resolve(): i for i, p in enumerate(ds.db_paths)}
    return [pos[q.image.resolve()] for q in ds.queries]  # holidays queries are db images


def bench_bow(ds: Dataset, db: list[LocalFeatures], train: list[LocalFeatures], words: int,
              configs: list[tuple[str, BowParams]], tag: str) -> list[tuple[str, dict[str, Any]]]:
    """One vocabulary (with HE codes) per tag, one inverted file; each config rescored on it
    ("no HE" configs accept every Hamming distance). Multiple assignment is query-side only."""
    f = cache_dir() / "local" / f"vocab_{tag}_{words}_64.npz"
    t0 = time.perf_counter()
    if f.exists():
        voc = Vocabulary.load(f.parent, f.name)
    else:
        voc = Vocabulary.fit(np.concatenate([x.float_desc() for x in train]), words, niter=10,
                             he_bits=64, max_train=120_000)
        voc.save(f.parent, f.name)
    t_voc = time.perf_counter() - t0
    cached = cache_dir() / "local" / f"bowindex_holidays300_{tag}_{words}"
    t0 = time.perf_counter()
    if (cached / "bow_index.npz").exists():
        idx = BowIndex.load(cached)
    else:
        idx = BowIndex(voc, configs[0][1])
        idx.add(range(len(db)), db)
        idx.save(cached)
    idx.params = configs[0][1]
    idx.scores(db[0])  # builds the inverted file
    t_add = time.perf_counter() - t0
    qpos = query_positions(ds)
    out = []
    for name, params in configs:
        idx.params, idx._built = params, None
        times: list[float] = []

        def fn(qi: int) -> np.ndarray:
            t = time.perf_counter()
            ids, s = idx.scores(db[qpos[qi]])
            times.append(time.perf_counter() - t)
            full = np.empty(len(db), np.float32)
            full[ids] = s
            return full

        res = score_queries(ds, fn)
        out.append((name, {**res, "vocab_s": round(t_voc, 1), "index_s": round(t_add, 1),
                           "query_ms_p50": round(1000 * float(np.median(times)), 1)}))
    return out


def bench_sv(ds: Dataset, db: list[LocalFeatures], gem: np.ndarray, **sv_params: Any) -> dict[str, Any]:
    """``gem`` (GeM cosine) and ``gem+sv`` through Pipeline.search with the sv step."""
    from types import SimpleNamespace

    from lookalike.rerank.sv import SpatialVerification
    from lookalike.store.flat import FlatStore
    from lookalike.pipelines import build

    pipe = build("gem")
    step = SpatialVerification(**sv_params)
    step.features = dict(enumerate(db))
    pipe.steps.append(step)
    store = FlatStore(gem.shape[1])
    store.add(np.arange(len(gem)), gem)
    qpos = query_positions(ds)
    times: list[float] = []

    def full(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = np.full(len(gem), -np.inf, np.float64)
        ok = ids >= 0
        out[ids[ok]] = scores[ok]
        return out

    base = score_queries(ds, lambda qi: full(*[a[0] for a in store.search(gem[qpos[qi]][None], len(gem))]))

    def fn(qi: int) -> np.ndarray:
        ctx = SimpleNamespace(query_features=db[qpos[qi]])
        t = time.perf_counter()
        s, i = pipe.search(store, gem[qpos[qi]][None], len(gem), [ctx])
        times.append(time.perf_counter() - t)
        return full(s[0], i[0])

    res = score_queries(ds, fn)
    return {"gem": base, "gem+sv": res, "sv_query_ms_p50": round(1000 * float(np.median(times)), 1),
            "sv_query_ms_mean": round(1000 * float(np.mean(times)), 1)}


def bench_vlad(ds: Dataset, db: list[LocalFeatures], train: list[LocalFeatures], words: int,
               pca_dim: int | None) -> dict[str, Any]:
    """``sift-vlad``: vocabulary (and PCA-whitening) learned on the training images; cosine."""
    from lookalike.features.local.vlad import VladExtractor

    ex = VladExtractor(words=words, pca_dim=pca_dim)
    t0 = time.perf_counter()
    ex.fit(train)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    v = ex.describe_features(db)
    t_desc = (time.perf_counter() - t0) / len(db)
    qpos = query_positions(ds)
    res = score_queries(ds, lambda qi: (v @ v[qpos[qi]]).astype(np.float64))
    return {**res, "dim": ex.dim, "fit_s": round(t_fit, 1), "encode_ms_per_image": round(1000 * t_desc, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--extract-only", action="store_true")
    ap.add_argument("--only", default="bow,vlad,sv,orb", help="comma list of: bow, vlad, sv, orb")
    ap.add_argument("--words", type=int, default=10000)
    args = ap.parse_args()
    ds = Dataset.load(args.data / "holidays300")
    hol = ds.db_paths
    _, fl = dataset(args.data, "flickr8k_1k")
    fl = fl[:VOCAB_IMAGES]  # vocabulary training images (never holidays)
    feats = {}
    for kind, mk, ms in (("sift", 2000, 650), ("orb", 2000, 650)):
        feats[kind] = (cached_features("holidays300", hol, kind, mk, ms),
                       cached_features(f"flickr8k_1k-{VOCAB_IMAGES}", fl, kind, mk, ms))
    if args.extract_only:
        return
    only = set(args.only.split(","))
    rows: list[tuple[str, dict[str, Any]]] = []

    def report(name: str, r: dict[str, Any]) -> None:
        rows.append((name, r))
        print(f"| {name} | " + ", ".join(f"{k}={v}" for k, v in r.items()) + " |", flush=True)

    if "bow" in only:
        db, train = feats["sift"]
        configs = [
            ("sift-bow: HE 64 + burstiness + WGC (as the sift-bow pipeline)", BowParams(ma=1, wgc=True)),
            ("sift-bow: HE 64 + burstiness + WGC + MA 3", BowParams(ma=3, wgc=True)),
            ("sift-bow: HE 64 + burstiness", BowParams(ma=1)),
            ("sift-bow: tf-idf only (MA 1, no HE, no burstiness)", BowParams(ma=1, he_threshold=64, he_sigma=0, burst=False)),
        ]
        for name, r in bench_bow(ds, db, train, args.words, configs, f"flickr{VOCAB_IMAGES}-sift"):
            report(f"{name}, {args.words} words", r)
    if "vlad" in only:
        db, train = feats["sift"]
        db, train = [f.subset(1000) for f in db], [f.subset(1000) for f in train]
        report("sift-vlad: 64 words", bench_vlad(ds, db, train, 64, None))
        report("sift-vlad: 64 words, PCA-whitened to 256", bench_vlad(ds, db, train, 64, 256))
    if "sv" in only:
        z = gem_feats.load(ds)
        r = bench_sv(ds, [f.subset(1000) for f in feats["sift"][0]], z["vectors"].astype(np.float32))
        report("gem (GeM EfficientNet-Lite2, shared features)", r["gem"])
        report("gem+sv (top 100 verified)", {**r["gem+sv"], "rerank_ms_p50": r["sv_query_ms_p50"],
                                                  "rerank_ms_mean": r["sv_query_ms_mean"]})
    if "orb" in only:
        db, train = feats["orb"]
        for name, r in bench_bow(ds, db, train, 4000, [("orb-bow: HE 64 + burstiness + WGC, 4000 words",
                                                       BowParams(ma=1, wgc=True))], f"flickr{VOCAB_IMAGES}-orb"):
            report(name, r)


if __name__ == "__main__":
    main()
