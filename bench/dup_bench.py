"""Copy-detection benchmark: duplicates among Holidays photos, their transformed copies and the other
shots of the same scenes (the hard negatives).

    PYTHONPATH=src python bench/dup_bench.py [--data ../shared/datasets/holidays300] [--groups 100]
        [--out /tmp/dup_bench] [--pipeline default] [--competitors /work/venvs/dupcmp/bin/python]
        [--json results.json] [--curve curve.png] [--split] [--reuse-index]

Writes (under ``--out``, never into the repository) one flat folder ``db/``: the dataset's 811
photos, and for the first photo of each of ``--groups`` Holidays groups 15 copies labelled by kind and
strength (resize 1/2 and 1/4, JPEG quality 30 and 10, crops to 80 % and 60 % of each side, mirror,
turns by 90 and 180 degrees, grey and hue-swapped recolouring, white and black borders, a small
caption and a large banner). The original and its copies form one family; every other photo (the
other shots of the same scene included) is a family of its own, except that photos the dataset holds
twice, under two scene numbers, share one family (``same_content_families``).

Scored on pairs: a predicted pair is two images a tool puts together (lookalike: in one group);
a true pair, two members of one family. Per kind: recall over (original, copy of that kind) pairs,
precision over predicted pairs that involve a copy of that kind. Also the precision-recall curve of
lookalike's verified score (re-grouping at each threshold), and, side by side with ``--competitors``
(a Python with imagededup and czkawka installed), imagededup's PHash (max distance 10, its default),
its CNN (min similarity 0.9, its default; when its weights can be had) and czkawka (similarity 15,
the level its Python bindings' README uses), each timed. ``--split`` also scores two halves apart:
``val`` (even Holidays scene numbers: choose thresholds there) and ``test`` (odd: report there).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

import lookalike
from lookalike.engine import duplicates as dup

ROOT = Path(__file__).resolve().parents[1]


def _jpeg(im: Image.Image, q: int) -> Image.Image:
    b = io.BytesIO()
    im.save(b, "JPEG", quality=q)
    return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


def _crop(im: Image.Image, f: float, off: float) -> Image.Image:
    w, h = int(im.width * f), int(im.height * f)
    x, y = int((im.width - w) * off), int((im.height - h) * (1 - off))
    return im.crop((x, y, x + w, y + h))


def _caption(im: Image.Image, size: int, banner: bool) -> Image.Image:
    c = im.copy()
    d = ImageDraw.Draw(c)
    if banner:
        d.rectangle([0, int(c.height * 0.72), c.width, int(c.height * 0.9)], fill=(20, 20, 20))
        d.text((8, int(c.height * 0.74)), "SUMMER HOLIDAYS 2008", fill=(255, 255, 0), font_size=size)
    else:
        d.text((8, 8), "© my photo", fill=(255, 255, 255), font_size=size)
    return c


def _hue(im: Image.Image) -> Image.Image:
    a = np.asarray(im)[..., [2, 0, 1]]
    return ImageEnhance.Color(Image.fromarray(a)).enhance(1.4)


TRANSFORMS = {  # (kind, strength) -> (function, saved as)
    ("resize", "1/2"): (lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), "jpg"),
    ("resize", "1/4"): (lambda im: im.resize((im.width // 4, im.height // 4), Image.Resampling.LANCZOS), "jpg"),
    ("jpeg", "q30"): (lambda im: _jpeg(im, 30), "png"),
    ("jpeg", "q10"): (lambda im: _jpeg(im, 10), "png"),
    ("crop", "80%"): (lambda im: _crop(im, 0.8, 0.5), "jpg"),
    ("crop", "60%"): (lambda im: _crop(im, 0.6, 0.2), "jpg"),
    ("mirror", "-"): (ImageOps.mirror, "jpg"),
    ("turn", "90"): (lambda im: im.transpose(Image.Transpose.ROTATE_90), "jpg"),
    ("turn", "180"): (lambda im: im.transpose(Image.Transpose.ROTATE_180), "jpg"),
    ("recolour", "grey"): (lambda im: ImageOps.grayscale(im).convert("RGB"), "jpg"),
    ("recolour", "hue"): (_hue, "jpg"),
    ("border", "5%"): (lambda im: ImageOps.expand(im, border=max(2, im.width // 20), fill=(255, 255, 255)), "jpg"),
    ("border", "15%"): (lambda im: ImageOps.expand(im, border=im.width * 3 // 20, fill=(0, 0, 0)), "jpg"),
    ("text", "small"): (lambda im: _caption(im, 16, False), "jpg"),
    ("text", "banner"): (lambda im: _caption(im, 26, True), "jpg"),
}


def build(data: Path, out: Path, groups: int) -> dict:
    """The benchmark folder and its labels: {file: {"family", "kind", "strength"}}."""
    gt = json.loads((data / "gt.json").read_text())
    db = out / "db"
    labels_path = out / "labels.json"
    if labels_path.exists():
        return same_content_families(json.loads(labels_path.read_text()), db)
    shutil.rmtree(out, ignore_errors=True)
    db.mkdir(parents=True)
    labels = {}
    for item in gt["db"]:
        shutil.copy(data / gt["db_dir"] / item["file"], db / item["file"])
        labels[item["file"]] = {"family": f"shot-{item['id']}", "kind": "original", "strength": "-",
                                "scene": int(item["id"]) // 100}
    originals = [q["image"] for q in gt["queries"]][:groups]
    for q in originals:
        name = Path(q).name
        fam = f"copy-{Path(q).stem}"
        labels[name]["family"] = fam
        im = Image.open(data / q).convert("RGB")
        for (kind, strength), (fn, ext) in TRANSFORMS.items():
            tag = strength.replace("/", "of").replace("%", "pc")
            f = f"{Path(q).stem}_{kind}_{tag}.{ext}"
            fn(im).save(db / f, quality=90) if ext == "jpg" else fn(im).save(db / f)
            labels[f] = {"family": fam, "kind": kind, "strength": strength, "scene": labels[name]["scene"]}
    labels_path.write_text(json.dumps(labels, indent=1))
    return same_content_families(labels, db)


# Photos the dataset holds twice, under two scene numbers: Holidays' scene 1039 is scene 1031 again
# (103901 and 103902 byte for byte; 103900 the same exposure re-encoded: pHash distance 0, the same
# picture side by side). No other two scenes' photos are within 10 pHash bits of each other.
DATASET_REPEATS = {"103900.jpg": "103100.jpg", "103901.jpg": "103101.jpg", "103902.jpg": "103102.jpg"}


def same_content_families(labels: dict, db: Path) -> dict:
    """The labels with the families of one photo joined where the dataset holds it twice (byte for
    byte, or listed in ``DATASET_REPEATS``): a copy of either is a copy of both, and a tool that
    groups them is right. A family of copies keeps its name."""
    by_digest: dict[str, list[str]] = {}
    for f, lab in labels.items():
        if lab["kind"] == "original":
            by_digest.setdefault(hashlib.sha1((db / f).read_bytes()).hexdigest(), []).append(f)
    same = [files for files in by_digest.values() if len(files) > 1]
    same += [[f, g] for f, g in DATASET_REPEATS.items() if f in labels and g in labels]
    rename: dict[str, str] = {}

    def root(fam: str) -> str:
        while fam in rename:
            fam = rename[fam]
        return fam

    for files in same:
        families = sorted({root(labels[f]["family"]) for f in files}, key=lambda x: (not x.startswith("copy-"), x))
        rename.update({fam: families[0] for fam in families[1:]})
    return {f: {**lab, "family": root(lab["family"])} for f, lab in labels.items()}


def score_pairs(pred: set[tuple[str, str]], labels: dict) -> dict:
    """Precision and recall overall and per kind (see the module's docstring)."""
    fam: dict[str, list[str]] = {}
    for f, lab in labels.items():
        fam.setdefault(lab["family"], []).append(f)
    truth = {tuple(sorted(p)) for members in fam.values() for p in combinations(members, 2)}
    pred = {tuple(sorted(p)) for p in pred}
    tp = len(pred & truth)
    out = {"overall": {"precision": tp / len(pred) if pred else 1.0, "recall": tp / len(truth) if truth else 1.0,
                       "pairs": len(pred), "true_pairs": len(truth)}}
    hard = [p for p in pred if labels[p[0]]["scene"] == labels[p[1]]["scene"] and p not in truth]
    out["overall"]["false_same_scene"] = len(hard)
    out["overall"]["false_other"] = len(pred) - tp - len(hard)
    kinds = sorted({(lab["kind"], lab["strength"]) for lab in labels.values() if lab["kind"] != "original"})
    originals = {lab["family"]: f for f, lab in labels.items() if lab["kind"] == "original" and lab["family"].startswith("copy-")}
    for kind in [k for k, _ in kinds] + [f"{k} {s}" for k, s in kinds]:
        def is_kind(f: str) -> bool:
            lab = labels[f]
            return lab["kind"] == kind or f"{lab['kind']} {lab['strength']}" == kind
        copies = [f for f in labels if labels[f]["kind"] != "original" and is_kind(f)]
        want = {tuple(sorted((originals[labels[f]["family"]], f))) for f in copies}
        involved = [p for p in pred if is_kind(p[0]) or is_kind(p[1])]
        good = sum(p in truth for p in involved)
        out[kind] = {"recall": len(want & pred) / len(want) if want else 1.0,
                     "precision": good / len(involved) if involved else 1.0, "copies": len(copies)}
    return out


def split_labels(labels: dict, half: str) -> dict:
    """The labels of one half of the scenes: ``val`` the even Holidays scene numbers, ``test`` the
    odd ones, ``all`` every scene. A scene's originals, copies and other shots stay together, so
    each half has its own copies and hard negatives; pairs across the halves are not scored."""
    if half == "all":
        return labels
    parity = 0 if half == "val" else 1
    return {f: lab for f, lab in labels.items() if lab["scene"] % 2 == parity}


def _scores(pred: set[tuple[str, str]], labels: dict, halves: list[str]) -> dict:
    out = {}
    for half in halves:
        lab = split_labels(labels, half)
        out[half] = score_pairs({p for p in pred if p[0] in lab and p[1] in lab}, lab)
    return out


def run_lookalike(db: Path, index_dir: Path, pipeline: str, labels: dict, halves: list[str],
                  reuse: bool = False, copy_cosine: float | None = None) -> tuple[dict, dict, dict]:
    t0 = time.perf_counter()
    if not (reuse and index_dir.exists()):
        shutil.rmtree(index_dir, ignore_errors=True)
    idx = lookalike.open(index_dir, pipeline=pipeline)
    rep = idx.add(db)
    t_index = time.perf_counter() - t0
    idx.close()
    ro = lookalike.open(index_dir, readonly=True)
    t1 = time.perf_counter()
    report = dup.find_duplicates(ro, "edited", all_scores=True, copy_cosine=copy_cosine)
    t_dup = time.perf_counter() - t1
    rows = ro.catalog.rows(ro.catalog.ok_ids().tolist())
    ro.close()
    name = {i: Path(r.path).name for i, r in rows.items()}
    timing = {"index_s": round(t_index, 1), "indexed": rep.added, "duplicates_s": round(t_dup, 1),
              "candidates": report.candidates, "verified": report.verified, "skipped": report.skipped,
              "phases_s": {k: round(v, 2) for k, v in report.timings.items() if isinstance(v, float)}}
    pairs = report.timings["pairs"]
    fields = {"a", "b", "kind", "score", "how"}
    # the curve: re-group at each threshold
    curve: dict[str, list] = {h: [] for h in halves}
    for thr in [0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.995, 0.997, 0.998, 0.9985, 0.999, 0.9992, 0.9995]:
        edges = {(p["a"], p["b"]): dup.Pair(**{k: p[k] for k in fields}) for p in pairs if p["score"] >= thr}
        groups = dup._group(edges, rows, "resolution", [])
        pred = {(name[a], name[b]) for g in groups for a, b in combinations(sorted(m.id for m in g.members), 2)}
        for half, sc in _scores(pred, labels, halves).items():
            s = sc["overall"]
            curve[half].append({"threshold": thr, "precision": s["precision"], "recall": s["recall"]})
    # the cosine floor below which pairs whose hashes disagree go unaligned: what each floor would
    # have kept of these scores (meaningful when this run aligned them all: --copy-cosine 0)
    sweep: dict[str, list] = {h: [] for h in halves}
    for floor in [0.6, 0.65, 0.7, 0.75, 0.8, 0.85]:
        kept = [p for p in pairs if p.get("cosine") is None or p["cosine"] >= floor
                or (p.get("bits") is not None and p["bits"] <= dup.NEAR_BITS)]
        edges = {(p["a"], p["b"]): dup.Pair(**{k: p[k] for k in fields}) for p in kept if p["score"] >= report.threshold}
        groups = dup._group(edges, rows, "resolution", [])
        pred = {(name[a], name[b]) for g in groups for a, b in combinations(sorted(m.id for m in g.members), 2)}
        for half, sc in _scores(pred, labels, halves).items():
            lab = split_labels(labels, half)
            sweep[half].append({"floor": floor, "aligned": sum(name[p["a"]] in lab and name[p["b"]] in lab for p in kept),
                                "precision": sc["overall"]["precision"], "recall": sc["overall"]["recall"]})
    timing["cosine_floor_sweep"] = sweep
    pred = {(name[a], name[b]) for a, b in report.pairs()}
    return _scores(pred, labels, halves), timing, curve


def run_competitors(python: str, db: Path, labels: dict) -> dict:
    out = {}
    script = Path(__file__).with_name("dup_competitors.py")
    for tool in ("imagededup-phash", "imagededup-cnn", "czkawka"):
        t0 = time.perf_counter()
        proc = subprocess.run([python, str(script), tool, str(db)], capture_output=True, text=True, timeout=3600)
        secs = time.perf_counter() - t0
        if proc.returncode != 0:
            out[tool] = {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        pred = {tuple(p) for p in res["pairs"]}
        out[tool] = {**score_pairs(pred, labels)["overall"], "seconds": round(secs, 1), "setting": res["setting"],
                     "peak_rss_mb": res.get("peak_rss_mb")}
    return out


def plot(curve: list, competitors: dict, ours: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([c["recall"] for c in curve], [c["precision"] for c in curve], "o-", label="lookalike (verified score)")
    for c in curve:
        ax.annotate(f"{c['threshold']:g}", (c["recall"], c["precision"]), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.plot([ours["recall"]], [ours["precision"]], "k*", ms=12, label="lookalike preset edited")
    for name, r in competitors.items():
        if "precision" in r:
            ax.plot([r["recall"]], [r["precision"]], "s", label=name)
    ax.set_xlabel("pair recall")
    ax.set_ylabel("pair precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("copy detection on Holidays photos and their copies")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "holidays300"))
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--out", default="/tmp/dup_bench")
    ap.add_argument("--pipeline", default="default")
    ap.add_argument("--competitors", default=None, help="a Python with imagededup and czkawka")
    ap.add_argument("--json", default=None)
    ap.add_argument("--curve", default=None)
    ap.add_argument("--split", action="store_true",
                    help="score the even scenes (val: where thresholds are chosen) and the odd ones (test) apart")
    ap.add_argument("--reuse-index", action="store_true", help="keep an index already built under --out")
    ap.add_argument("--copy-cosine", type=float, default=None,
                    help="align candidates whose hashes disagree only from this cosine (0: all; default: the pipeline's)")
    a = ap.parse_args()
    out = Path(a.out)
    labels = build(Path(a.data), out, a.groups)
    index_dir = out / f"index-{a.pipeline}"
    halves = ["all", "val", "test"] if a.split else ["all"]
    ours_all, timing, curves = run_lookalike(out / "db", index_dir, a.pipeline, labels, halves, a.reuse_index,
                                        a.copy_cosine)
    ours, curve = ours_all["all"], curves["all"]
    result = {"date": dt.date.today().isoformat(), "load": os.getloadavg(), "images": len(labels),
              "groups": a.groups, "pipeline": a.pipeline, "lookalike": ours, "timing": timing, "curve": curve,
              "halves": {h: {"lookalike": ours_all[h], "curve": curves[h]} for h in halves if h != "all"},
              "presets": {k: {"kinds": list(v["kinds"]), "threshold": v["threshold"]} for k, v in dup.PRESETS.items()},
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if a.competitors:
        result["competitors"] = run_competitors(a.competitors, out / "db", labels)
    if a.curve:
        plot(curve, result.get("competitors", {}), ours["overall"], Path(a.curve))
    text = json.dumps(result, indent=1)
    if a.json:
        Path(a.json).write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
