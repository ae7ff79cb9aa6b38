"""Benchmark every deep global aggregation on holidays300 and caltech101_97.

One backbone pass per dataset, image and variant (scale × flip); every aggregation is computed
from that pass and its L2-normalised vectors are cached under ~/.cache/lookalike/global_bench/.
Multi-scale / flip descriptors are sums of the cached per-variant vectors, exactly as
DeepExtractor computes them. Whitening (pcaw) is learned on the OTHER dataset.

    nice -n 10 python bench/global_descriptors.py --datasets holidays300 caltech101_97
    python bench/global_descriptors.py --side 512 --scales 1,0.7071,1.4142 --flip --whiten-limit 2000
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from lookalike.config import cache_dir
from lookalike.eval.dataset import Dataset
from lookalike.eval.metrics import average_precision, precision_at
from lookalike.features.aggregators import AGGREGATORS
from lookalike.vectors import l2n
from lookalike.features.deep import DeepExtractor
from lookalike.pipelines.deep import WHITEN
from lookalike.postprocess import PCAWhitening, Power

import gem_feats

# row name -> (aggregator, params)
AGGS: dict[str, tuple[str, dict]] = {
    "fc": ("fc", {}), "spoc": ("spoc", {}), "spoc-prior": ("spoc", {"prior": True}),
    "mac": ("mac", {}), "rmac": ("rmac", {}), "gem": ("gem", {}), "crow": ("crow", {}),
    "scda": ("scda", {}), "pwa": ("pwa", {}), "cam": ("cam", {}),
}
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
WHITEN_FROM = {"holidays300": "caltech101_97", "caltech101_97": "holidays300"}


def subset(ds: Dataset, limit: int | None) -> list[int]:
    """Indices of the db images to describe: all, or a fixed random sample of ``limit``."""
    n = len(ds.db_paths)
    if not limit or limit >= n:
        return list(range(n))
    return sorted(np.random.default_rng(0).permutation(n)[:limit].tolist())


def variant_file(name: str, backbone: str, side: int, scale: float, flip: bool, limit: int | None) -> Path:
    key = hashlib.sha1(json.dumps(AGGS, sort_keys=True).encode()).hexdigest()[:8]
    d = cache_dir() / "global_bench"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}-{backbone}-s{side}-x{scale:.4f}-f{int(flip)}-n{limit or 'all'}-{key}.npz"


def extract_variant(ds: Dataset, backbone: str, side: int, scale: float, flip: bool,
                    limit: int | None) -> dict[str, np.ndarray]:
    """Per aggregation (N, D) L2 vectors of one variant, plus timings; cached on disk."""
    full = variant_file(ds.name, backbone, side, scale, flip, None)
    f = full if full.exists() else variant_file(ds.name, backbone, side, scale, flip, limit)
    if f.exists():
        z = dict(np.load(f))
        if limit and f == full:  # take the sample out of the full cache
            idx = np.array(subset(ds, limit))
            z.update({k: z[k][idx] for k in AGGS})
        return z
    idx = subset(ds, limit)
    ex = DeepExtractor(backbone, "gem", max_side=side, scales=(scale,))
    pools = {k: AGGREGATORS.get(a) for k, (a, _) in AGGS.items()}
    out = {k: [] for k in AGGS}
    pool_s = dict.fromkeys(AGGS, 0.0)
    weight, bias = ex.net.classifier()
    t0, t_pool = time.perf_counter(), 0.0
    paths = [ds.db_paths[i] for i in idx]
    for bi, prepared in enumerate(ex.iter_prepared(paths, batch=16)):
        if flip:
            prepared = [[np.ascontiguousarray(p[0][:, ::-1])] for p in prepared]
        for fmap, logits in ex.net.run([p[0] for p in prepared]):
            ctx = ex.context(logits)
            ctx.fc_weight, ctx.fc_bias = weight, bias
            for k, (_, params) in AGGS.items():
                t = time.perf_counter()
                out[k].append(l2n(pools[k](fmap[None], ctx, **params))[0].astype(np.float16))
                dt = time.perf_counter() - t
                pool_s[k] += dt
                t_pool += dt
        if bi % 20 == 0:
            print(f"  {ds.name} s{side} x{scale:.3f} f{int(flip)}: {len(out['gem'])}/{len(paths)}",
                  file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    z = {k: np.stack(v) for k, v in out.items()}
    z["idx"] = np.array(idx)
    z["backbone_s"] = np.array(total - t_pool)
    z.update({f"pool_s_{k}": np.array(v) for k, v in pool_s.items()})
    np.savez(f, **z)
    return z


def shared_descriptors(ds: Dataset) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """gem and fc from the shared GeM Lite2 352 features (same DeepExtractor, db order)."""
    z = gem_feats.load(ds)
    return ({"gem": z["vectors"].astype(np.float32), "fc": l2n(z["logits"].astype(np.float32))},
            {"gem": float("nan"), "fc": float("nan")})


def descriptors(ds: Dataset, args, limit: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per aggregation: multi-scale/flip combined L2 descriptors, and images/s."""
    if args.from_shared:
        return shared_descriptors(ds)
    total: dict[str, np.ndarray] = {}
    seconds = dict.fromkeys(AGGS, 0.0)
    n = 0
    for scale in args.scales:
        for flip in ([False, True] if args.flip else [False]):
            z = extract_variant(ds, args.backbone, args.side, scale, flip, limit)
            n = len(z["gem"])
            for k in AGGS:
                total[k] = total.get(k, 0) + z[k].astype(np.float32)
                seconds[k] += float(z["backbone_s"]) + float(z[f"pool_s_{k}"])
    return {k: l2n(v) for k, v in total.items()}, {k: n / s for k, s in seconds.items()}


def evaluate(ds: Dataset, x: np.ndarray) -> dict[str, float]:
    """mAP and P@10 over the queries (db images), ranking the full db, junk dropped, ties pessimistic."""
    pos = {p.resolve(): i for i, p in enumerate(ds.db_paths)}
    qi = np.array([pos[q.image.resolve()] for q in ds.queries])
    sims = x[qi] @ x.T
    id_pos = {d: i for i, d in enumerate(ds.db_ids)}
    aps, p10 = [], []
    for row, q in zip(sims, ds.queries):
        keep = np.ones(len(ds.db_ids), bool)
        keep[[id_pos[j] for j in q.junk]] = False
        rel = np.zeros(len(ds.db_ids), bool)
        rel[[id_pos[r] for r in q.relevant]] = True
        s, r = row[keep].astype(np.float64), rel[keep]
        ranked = r[np.lexsort((r, -s))]  # ties: non-relevant first
        aps.append(average_precision(ranked, int(r.sum())))
        p10.append(precision_at(ranked, 10))
    return {"mAP": float(np.mean(aps)), "P@10": float(np.mean(p10))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["holidays300", "caltech101_97"])
    ap.add_argument("--backbone", default="efficientnet-lite2")
    ap.add_argument("--side", type=int, default=352)
    ap.add_argument("--scales", type=lambda s: [float(v) for v in s.split(",")], default=[1.0])
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--whiten-limit", type=int, default=None,
                    help="learn whitening on a random sample of this many images of the other set")
    ap.add_argument("--whiten-dim", type=int, default=WHITEN["dim"])
    ap.add_argument("--whiten-eps", type=float, default=WHITEN["eps"])
    ap.add_argument("--whiten", action=argparse.BooleanOptionalAction, default=True,
                    help="learn PCA-whitening on the other dataset (needs its descriptors too)")
    ap.add_argument("--from-shared", action="store_true",
                    help="gem and fc only, from ~/.cache/lookalike/shared_feats (max side 352, one scale)")
    ap.add_argument("--aggs", nargs="*", default=list(AGGS))
    ap.add_argument("--power", action="store_true", help="also report signed-sqrt before whitening")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    args = ap.parse_args()
    rows = []
    for name in args.datasets:
        ds = Dataset.load(args.data / name)
        x, rate = descriptors(ds, args)
        if args.whiten:
            wx, _ = descriptors(Dataset.load(args.data / WHITEN_FROM[name]), args, args.whiten_limit)
        for k in args.aggs:
            r = {"dataset": name, "agg": k, "dim": x[k].shape[1], "img_s": rate[k], **evaluate(ds, x[k])}
            r.update({"w_mAP": float("nan"), "w_P@10": float("nan")})
            # learned on the evaluated collection itself, without labels (as an index does)
            own = PCAWhitening(args.whiten_dim, args.whiten_eps).fit(x[k])
            r.update({f"o_{m}": v for m, v in evaluate(ds, own.apply(x[k])).items()})
            if args.whiten:
                w = PCAWhitening(args.whiten_dim, args.whiten_eps).fit(wx[k])
                r.update({f"w_{m}": v for m, v in evaluate(ds, w.apply(x[k])).items()})
            if args.power and args.whiten:
                p = Power()
                wp = PCAWhitening(args.whiten_dim, args.whiten_eps).fit(p.apply(wx[k]))
                r.update({f"pw_{m}": v for m, v in evaluate(ds, wp.apply(p.apply(x[k]))).items()})
            rows.append(r)
            print(json.dumps({a: (round(b, 4) if isinstance(b, float) else b) for a, b in r.items()}), flush=True)
    cfg = (f"{args.backbone}, max side {args.side}, scales {args.scales}, flip {args.flip}, "
           f"pcaw dim {args.whiten_dim}, eps {args.whiten_eps} (other set: limit {args.whiten_limit})")
    lines = [f"\n### {cfg}\n", f"`{' '.join(['python'] + sys.argv)}` — {datetime.date.today()}\n",
             "| dataset | aggregation | dim | mAP | P@10 | mAP pcaw (other set) | P@10 pcaw (other set) "
             "| mAP pcaw (own db) | P@10 pcaw (own db) | img/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['agg']} | {r['dim']} | {r['mAP']:.4f} | {r['P@10']:.4f} | "
                     f"{r['w_mAP']:.4f} | {r['w_P@10']:.4f} | {r['o_mAP']:.4f} | {r['o_P@10']:.4f} | "
                     f"{r['img_s']:.1f} |")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
