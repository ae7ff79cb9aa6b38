"""Indexing speed on camera-sized photos: `lookalike index`'s path against a plain loop, same run.

Makes its own photos (once, kept in ``--work``): holidays300 images (../shared/datasets) enlarged to
12 MP (4000×3000, ``--n`` of them) and 24 MP (6000×4000, half as many), landscape and portrait, with a little sensor-like grain so
they compress like real photos, saved as JPEG quality 90 (about 2 MB at 12 MP). Then, for each size
and pipeline, each in a fresh process (so its peak RSS is its own, read by ``os.wait4``):

- ``index``: ``lookalike.open(...).add(folder)``, the code ``lookalike index`` runs (writer, runner,
  ``process_batch``, catalog and store); one warm-up image is indexed first so that the model's
  one-off session start is not counted; images/s over the timed ``add``.
- ``split``: the same decoding (``engine.runners.read_one`` at the pipeline's decode side, in the
  runner's decoding threads) alone, then the same extractor on the decoded images alone.
- ``plain``: a plain loop: PIL full decode, EXIF rotation, one bicubic resize per scale from the
  full image, the same ONNX model (default session settings) one image at a time, the same pooling.

Prints images/s, decode vs inference, peak RSS, the ratio to the plain loop, and the load average.

    PYTHONPATH=src python bench/ingest_speed.py [--n 48] [--mp 12 24] [--pipelines gem default]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
WORK = Path(tempfile.gettempdir()) / "lookalike-ingest-speed"
SIZES = {12: (4000, 3000), 24: (6000, 4000)}


def make_photos(data: Path, out: Path, n: int, mp: int) -> list[Path]:
    """n JPEGs of ``mp`` megapixels from holidays300 (every third one portrait); kept for reuse."""
    folder = out / f"photos-{mp}mp-{n}"
    done = folder / ".complete"
    if done.exists():
        return sorted(folder.glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    gt = json.loads((data / "holidays300" / "gt.json").read_text())
    files = [data / "holidays300" / gt.get("db_dir", "images") / d["file"] for d in gt["db"]]
    files = files[:: max(1, len(files) // n)][:n]
    rng = np.random.default_rng(0)
    w, h = SIZES[mp]
    for i, f in enumerate(files):
        size = (h, w) if i % 3 == 2 else (w, h)
        im = Image.open(f).convert("RGB")
        sw, sh = im.size  # crop to the photo's aspect, then enlarge
        a = size[0] / size[1]
        cw, ch = (sw, round(sw / a)) if sw / sh < a else (round(sh * a), sh)
        im = im.crop(((sw - cw) // 2, (sh - ch) // 2, (sw - cw) // 2 + cw, (sh - ch) // 2 + ch)).resize(size, Image.BICUBIC)
        x = np.asarray(im, np.float32)
        x += rng.standard_normal((size[1], size[0], 1), np.float32) * 3.0  # luminance grain
        x += rng.standard_normal((size[1], size[0], 3), np.float32) * 1.0  # a little chroma noise
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.jpg", quality=90)
    done.touch()
    return sorted(folder.glob("*.jpg"))


# -- the three measurements, each run in a child process -------------------------------------------
def child_index(pipeline: str, folder: str, warm: str, tmp: str) -> dict:
    import lookalike

    ix = lookalike.open(os.path.join(tmp, "idx"), pipeline=pipeline)
    ix.add(warm)
    warm_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t, c = time.perf_counter(), time.process_time()
    rep = ix.add(folder)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    ix.close()
    return {"images": rep.added, "failed": len(rep.failed), "seconds": dt, "rate": rep.added / dt,
            "cpu_ms": 1000 * cpu / rep.added, "warm_mb": warm_mb}


def child_split(pipeline: str, folder: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from lookalike.engine import runners
    from lookalike.io import load_image
    from lookalike.pipelines import build
    from lookalike.pipelines.spec import parse_spec

    pipe = build(parse_spec(pipeline))
    paths = sorted(str(p) for p in Path(folder).glob("*.jpg"))
    side = runners.decode_side(pipe)
    pipe.extractor.describe([np.zeros((64, 64, 3), np.uint8)])  # session start, not timed
    t, c = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(runners.READ_THREADS) as pool:
        images = [x.image for x in pool.map(lambda p: runners.read_one(p, side), paths)]
    t_dec, c_dec = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    for s in range(0, len(images), 32):
        pipe.extractor.describe_with_logits(images[s:s + 32])
    t_inf, c_inf = time.perf_counter() - t, time.process_time() - c
    # what reduced decoding changes: the same photos decoded in full, each scale resized from that
    full = [load_image(p) for p in paths[:12]]
    a = pipe.extractor.describe(images[:12])
    b = pipe.extractor.describe(full)
    cos = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"decode_rate": len(paths) / t_dec, "infer_rate": len(paths) / t_inf,
            "decode_cpu_ms": 1000 * c_dec / len(paths), "infer_cpu_ms": 1000 * c_inf / len(paths),
            "decoded": f"{images[0].shape[1]}x{images[0].shape[0]}", "cos_min": float(cos.min()),
            "cos_mean": float(cos.mean())}


def child_plain(pipeline: str, folder: str) -> dict:
    import onnxruntime as ort
    from PIL import ImageOps

    from lookalike.features.backbone import OnnxBackbone
    from lookalike.pipelines import build
    from lookalike.pipelines.spec import parse_spec
    from lookalike.vectors import l2n

    ex = build(parse_spec(pipeline)).extractor
    parts = [ex.first, ex.second] if hasattr(ex, "first") else [ex]
    first = parts[0]
    net = OnnxBackbone(first.backbone_name)
    sess = ort.InferenceSession(str(net.onnx_path), providers=["CPUExecutionProvider"])
    sides = [max(32, round(first.max_side * s)) for s in first.scales]
    paths = sorted(Path(folder).glob("*.jpg"))
    t, c = time.perf_counter(), time.process_time()
    for p in paths:
        im = ImageOps.exif_transpose(Image.open(p).convert("RGB"))
        for side in sides:
            r = side / max(im.size)
            x = np.asarray(im.resize((round(im.width * r), round(im.height * r)), Image.BICUBIC), np.float32)
            x = ((x - net.mean) / net.std).transpose(2, 0, 1)[None]
            fmap, logits = sess.run(None, {"image": np.ascontiguousarray(x)})
            for e in parts:
                l2n(e.pool_map(fmap[0], logits[0]))
    return {"rate": len(paths) / (time.perf_counter() - t), "cpu_ms": 1000 * (time.process_time() - c) / len(paths)}


CHILDREN = {"index": child_index, "split": child_split, "plain": child_plain}


def in_child(kind: str, *args: str) -> dict:
    """Run one measurement in a fresh interpreter; its result and its own peak RSS (MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as res:
        p = subprocess.Popen([sys.executable, __file__, "--child", kind, res.name, *args], env=os.environ)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode:
            raise SystemExit(f"{kind} {args} failed with exit code {p.returncode}")
        out = json.loads(Path(res.name).read_text())
    out["peak_mb"] = usage.ru_maxrss / 1024.0
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="photos of 12 MP (half as many of 24 MP)")
    ap.add_argument("--mp", type=int, nargs="+", default=[12, 24], choices=sorted(SIZES))
    ap.add_argument("--pipelines", nargs="+", default=["gem", "default"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, default=WORK, help="where the photos are made and kept")
    ap.add_argument("--skip", nargs="*", default=[], choices=sorted(CHILDREN), help="measurements to leave out")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, result, *rest = args.child
        Path(result).write_text(json.dumps(CHILDREN[kind](*rest)))
        return
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"load average {load()}", flush=True)
    notes: list[str] = []
    for mp in args.mp:
        photos = make_photos(args.data, args.work, args.n if mp == 12 else max(1, args.n // 2), mp)
        folder = str(photos[0].parent)
        mb = sum(p.stat().st_size for p in photos) / len(photos) / 1e6
        print(f"\n{len(photos)} photos of {mp} MP ({mb:.1f} MB each on average), {folder}", flush=True)
        warm = args.work / "warm.jpg"
        if not warm.exists():
            Image.open(photos[-1]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(warm, quality=90)
        print("| pipeline | index images/s | CPU ms/image | peak RSS (after warm-up) | decode alone: images/s, CPU ms/image (size) "
              "| inference alone (one thread): images/s, CPU ms/image | plain loop images/s | plain CPU ms/image | plain peak RSS | ratio | load average |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for pipeline in args.pipelines:
            with tempfile.TemporaryDirectory(dir=args.work) as tmp:
                before = load()
                ix = in_child("index", pipeline, folder, str(warm), tmp) if "index" not in args.skip else None
                sp = in_child("split", pipeline, folder) if "split" not in args.skip else None
                pl = in_child("plain", pipeline, folder) if "plain" not in args.skip else None
            f = lambda d, k, fmt="{:.1f}": fmt.format(d[k]) if d else "-"  # noqa: E731
            ratio = f"{ix['rate'] / pl['rate']:.1f}×" if ix and pl else "-"
            print(f"| `{pipeline}` | {f(ix, 'rate')} | {f(ix, 'cpu_ms', '{:.0f}')} | {f(ix, 'peak_mb', '{:.0f} MB')} "
                  f"({f(ix, 'warm_mb', '{:.0f} MB')}) | {f(sp, 'decode_rate')}, {f(sp, 'decode_cpu_ms', '{:.0f}')} "
                  f"({sp['decoded'] if sp else '-'}) | {f(sp, 'infer_rate')}, {f(sp, 'infer_cpu_ms', '{:.0f}')} "
                  f"| {f(pl, 'rate')} | {f(pl, 'cpu_ms', '{:.0f}')} | {f(pl, 'peak_mb', '{:.0f} MB')} "
                  f"| {ratio} | {before} → {load()} |", flush=True)
            if sp:
                notes.append(f"`{pipeline}` at {mp} MP: raw descriptor of the reduced decode vs a full decode, cosine "
                             f"min {sp['cos_min']:.4f}, mean {sp['cos_mean']:.4f} (12 photos)")
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
