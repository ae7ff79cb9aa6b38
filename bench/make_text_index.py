"""Build a 10,000-image text index for the text latency benchmark (``bench/text_latency.py``).

    PYTHONPATH=src python bench/make_text_index.py --out /tmp/text-bench [--data ../shared/datasets]

Makes 10,000 distinct small JPEGs (each flickr8k_1k image cropped 10 ways, long side 160 px) and a
captions file (one caption per image: English for even crops, Chinese for odd ones), trains the
bridges on flickr8k_1k's English and Chinese captions (``text.bridges.train_bridges``, descriptors
from ``lookalike eval``'s feature cache) and saves them in the index folder before indexing, so
every image gets its bridge vectors; then runs ``lookalike index OUT/images -i OUT/index -p text``
and ``lookalike tag -i OUT/index --captions OUT/captions.csv``, timing each step.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CROPS = [(0, 0, 1, 1), (0, 0, .8, .8), (.2, 0, 1, .8), (0, .2, .8, 1), (.2, .2, 1, 1), (.1, .1, .9, .9),
         (.2, .2, .8, .8), (0, 0, .6, 1), (.4, 0, 1, 1), (0, .15, 1, .85)]
SIDE = 160


def make_images(data: Path, out: Path) -> list[tuple[str, str]]:
    """Write the crops; returns (file name, caption) per image."""
    en = json.loads((data / "flickr8k_1k" / "gt.json").read_text())
    zh = json.loads((data / "flickr8k_1k_zh" / "gt.json").read_text())
    caps: dict[str, dict[str, list[str]]] = {"en": {}, "zh": {}}
    for lang, gt in (("en", en), ("zh", zh)):
        for q in gt["queries"]:
            caps[lang].setdefault(q["relevant"][0], []).append(q["text"])
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in en["db"]:
        src = data / "flickr8k_1k" / en["db_dir"] / item["file"]
        im = Image.open(src).convert("RGB")
        w, h = im.size
        for c, (x0, y0, x1, y1) in enumerate(CROPS):
            name = f"{item['id']}_{c}.jpg"
            f = img_dir / name
            if not f.exists():
                crop = im.crop((int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)))
                crop.thumbnail((SIDE, SIDE))
                crop.save(f, quality=85)
            lang = "en" if c % 2 == 0 else "zh"
            pool = caps[lang].get(item["id"]) or caps["en"][item["id"]]
            rows.append((name, pool[(c // 2) % len(pool)]))
    return rows


def train(data: Path, index: Path) -> None:
    from lookalike.eval.dataset import Dataset
    from lookalike.eval.text import image_features
    from lookalike.text.bridge import class_probs
    from lookalike.text.bridges import train_bridges

    texts, owner = [], []
    X = L = None
    for name in ("flickr8k_1k", "flickr8k_1k_zh"):
        ds = Dataset.load(str(data / name))
        X, L = image_features(ds)
        pos = {d: i for i, d in enumerate(ds.db_ids)}
        for q in ds.queries:
            texts.append(q.text or "")
            owner.append(pos[q.relevant[0]])
    bridges = train_bridges(X, texts, np.array(owner), class_probs(L))
    index.mkdir(parents=True, exist_ok=True)
    bridges.save(index)


def run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))
    args = ap.parse_args()
    out, data = Path(args.out), Path(args.data)
    times: dict[str, float] = {}
    t = time.perf_counter()
    rows = make_images(data, out)
    with open(out / "captions.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("path", "caption"), *rows])
    times["images_s"] = time.perf_counter() - t
    index = out / "index"
    t = time.perf_counter()
    if not (index / "text_bridge.npz").exists():
        train(data, index)
    times["bridges_s"] = time.perf_counter() - t
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    lk = [sys.executable, "-m", "lookalike"]
    times["index_s"] = run([*lk, "index", str(out / "images"), "-i", str(index), "-p", "text", "-q"], env)
    times["tag_s"] = run([*lk, "tag", "-i", str(index), "--captions", str(out / "captions.csv")], env)
    print(json.dumps({"images": len(rows), **{k: round(v, 1) for k, v in times.items()}}))


if __name__ == "__main__":
    main()
