"""The demo: build a sample collection (or use your folder), index it, and query it.

The sample is made offline from the photos that scikit-image ships, plus cropped, rotated,
rescaled and recoloured copies of each, so there are near-duplicates to find.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "motorcycle_left",
                 "immunohistochemistry", "hubble_deep_field", "retina", "camera", "page", "brick",
                 "grass", "gravel", "colorwheel", "logo")
MARKER = ".lookalike-sample"


def _photo(name: str) -> Image.Image | None:
    from skimage import data

    try:
        arr = getattr(data, name)()
    except Exception:  # noqa: BLE001 - some photos need optional downloads: skip those
        return None
    if isinstance(arr, tuple):
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (255 * (arr.astype(np.float64) / max(float(arr.max()), 1e-9))).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def variants(im: Image.Image) -> dict[str, Image.Image]:
    """Near-duplicates of ``im``: a crop, a rotation, a rescale, a recolour, a mirror."""
    w, h = im.size
    return {
        "crop": im.crop((w // 8, h // 8, w - w // 6, h - h // 5)),
        "rot": im.rotate(12, resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255)),
        "small": im.resize((max(16, w // 2), max(16, h // 2)), Image.LANCZOS),
        "warm": ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.15)).enhance(1.4),
        "mirror": ImageOps.mirror(im),
    }


def make_sample(folder: Path) -> Path:
    """Write the sample collection to ``folder/collection`` and query images to ``folder/queries``."""
    coll, queries = folder / "collection", folder / "queries"
    coll.mkdir(parents=True, exist_ok=True)
    queries.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_PHOTOS:
        im = _photo(name)
        if im is None:
            continue
        im.save(coll / f"{name}.jpg", quality=92)
        vs = variants(im)
        for tag, v in vs.items():
            if tag == "crop":  # the crop is kept back as a query
                v.save(queries / f"{name}_{tag}.jpg", quality=90)
            else:
                v.save(coll / f"{name}_{tag}.jpg", quality=90)
    (folder / MARKER).write_text("sample collection made by lookalike.demo\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from lookalike.api import Index

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="demo-data", help="your image folder, or where to make the sample")
    ap.add_argument("--index", default="demo-index")
    ap.add_argument("--pipeline", default="default")
    ap.add_argument("-k", type=int, default=5)
    args = ap.parse_args(argv)
    con = Console()
    data = Path(args.data)
    sample = not data.exists() or (data / MARKER).exists()
    if sample and not (data / MARKER).exists():
        con.print(f"making the sample collection in {data}/ (scikit-image photos + altered copies)")
        make_sample(data)
    root = data / "collection" if sample else data
    idx = Index(args.index, args.pipeline)
    t = time.perf_counter()
    rep = idx.add([root], prune=True, on_error=lambda p, r: con.print(f"[yellow]skipped[/] {p}: {r}"))
    con.print(f"indexed {root}: added {rep.added}, unchanged {rep.unchanged}, skipped {len(rep.failed)} "
              f"in {time.perf_counter() - t:.1f} s; {len(idx)} images in {args.index}/ ({idx.spec})")
    qdir = data / "queries"
    qs = sorted(qdir.glob("*.jpg"))[:4] if sample else sorted(p for p in root.rglob("*") if p.is_file())[:3]
    for q in qs:
        res = idx.search(str(q), k=args.k)
        table = Table(title=f"query: {q}", show_header=True, header_style="bold")
        table.add_column("rank", justify="right")
        table.add_column("score", justify="right")
        table.add_column("path")
        for h in res.hits:
            table.add_row(str(h.rank), f"{h.score:.4f}", h.path)
        con.print(table)
        con.print(f"took {res.took_ms / 1000:.4f} s")
    idx.close()


if __name__ == "__main__":
    main()
