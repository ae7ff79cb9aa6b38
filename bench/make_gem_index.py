"""Build a 1,000-image ``gem`` index for timing ``lookalike search`` start-up (BENCHMARKS.md).

    PYTHONPATH=src python bench/make_gem_index.py --out /tmp/gem1k [--data ../shared/datasets]

Indexes flickr8k_1k's 1000 photos with ``lookalike index DIR -i OUT -p gem -q`` and prints the
time it took. Time a search with e.g. ``/usr/bin/time lookalike search QUERY.jpg -i OUT -k 10``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))
    args = ap.parse_args()
    images = Path(args.data) / "flickr8k_1k" / "images"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lookalike", "index", str(images), "-i", args.out, "-p", "gem", "-q"],
                   check=True, env=env)
    print(json.dumps({"images": len(list(images.glob("*.jpg"))), "index_s": round(time.perf_counter() - t, 1)}))


if __name__ == "__main__":
    main()
