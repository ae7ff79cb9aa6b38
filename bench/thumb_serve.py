"""Server time per thumbnail on real photos: stored at index time vs made from the original.

    python bench/thumb_serve.py [--dataset ../shared/datasets/holidays300] [--n 200]
    python bench/thumb_serve.py --camera 100      # 100 generated 12-megapixel JPEGs instead

Indexes the dataset's images with the ``color`` pipeline into a temporary folder (thumbnails are
made while indexing), then asks the app (in process, one request at a time) for ``--n`` thumbnails
with the stored ones, and for the same ``--n`` after hiding ``thumbs.sqlite`` (the server then reads,
checks and decodes each original, as for an index made before thumbnails; its memory cache is cold).
Prints one JSON object with the median and mean ms per request, sizes and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def timed(client, ids: list[int]) -> list[float]:
    out = []
    for i in ids:
        t0 = time.perf_counter()
        r = client.get(f"/thumbs/{i}")
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
    return out


def camera_photos(folder: Path, n: int) -> None:
    """Camera-sized JPEGs (4032x3024, quality 90): a smooth gradient, blocks of colour and grain."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    small = (378, 504)  # drawn at 1/8 size, enlarged, then grain added at full size
    for i in range(n):
        yy, xx = np.mgrid[0:small[0], 0:small[1]]
        img = rng.uniform(0, 255, 3) + xx[..., None] * rng.uniform(-.4, .4, 3) + yy[..., None] * rng.uniform(-.4, .4, 3)
        for _ in range(8):
            x, y = rng.integers(0, small[1] - 40), rng.integers(0, small[0] - 40)
            img[y:y + rng.integers(20, 120), x:x + rng.integers(20, 120)] = rng.uniform(0, 255, 3)
        big = np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((4032, 3024), Image.BILINEAR))
        grain = rng.integers(-12, 13, big.shape, dtype=np.int16)
        Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(folder / f"cam{i:03d}.jpg", quality=90)


def main() -> None:
    from fastapi.testclient import TestClient

    import lookalike
    from lookalike.server import create_app

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "holidays300")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--camera", type=int, default=0, help="generate this many 4032x3024 JPEGs (camera-sized) "
                    "and use them instead of the dataset")
    args = ap.parse_args()
    images = args.dataset / "images" if (args.dataset / "images").is_dir() else args.dataset
    with tempfile.TemporaryDirectory(prefix="thumb-serve-") as tmp:
        if args.camera:
            images = Path(tmp) / "camera"
            camera_photos(images, args.camera)
        index = Path(tmp) / "idx"
        t0 = time.perf_counter()
        with lookalike.open(index, pipeline="color") as idx:
            idx.add(images)
            ids = [int(i) for i in sorted(idx.catalog.ok_ids())[:args.n]]
            sizes = [os.path.getsize(idx.catalog.get(i).path) for i in ids]
        built = time.perf_counter() - t0
        result = {}
        for mode in ("stored", "from_original"):
            if mode == "from_original":
                for p in index.glob("thumbs.sqlite*"):
                    p.rename(Path(tmp) / p.name)
            with TestClient(create_app(index, reload_every=0)) as client:
                client.get("/healthz")
                ms = timed(client, ids)
            result[mode] = {"median_ms": round(statistics.median(ms), 2), "mean_ms": round(statistics.mean(ms), 2)}
    print(json.dumps({"dataset": f"{args.camera} generated 4032x3024 JPEGs" if args.camera else str(args.dataset),
                      "thumbnails": len(ids),
                      "original_kb_median": round(statistics.median(sizes) / 1024, 1), "index_build_s": round(built, 1),
                      **result, "loadavg": [round(x, 2) for x in os.getloadavg()],
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "command": "python bench/thumb_serve.py " + " ".join(sys.argv[1:])}, indent=2))


if __name__ == "__main__":
    main()
