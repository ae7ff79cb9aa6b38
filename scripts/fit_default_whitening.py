"""Learn the whitening that ships with the ``default`` pipeline.

``default`` is ``fusion-rmac-gem`` with each part PCA-whitened (``PARTS_WHITEN``). The whitening is
learned once, without labels, on flickr8k_1k's 1000 everyday photos — never on a set it is
evaluated on — and stored as float16 in ``src/lookalike/features/data/default-whitening/``:

    python scripts/fit_default_whitening.py ../shared/datasets/flickr8k_1k
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from lookalike.eval.dataset import Dataset
from lookalike.eval.runner import cached_descriptors
from lookalike.pipelines.deep import PARTS_WHITEN, SHIPPED_WHITENING
from lookalike.pipelines import build
from lookalike.postprocess import PartsWhitening


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a dataset folder with gt.json (its database images are used)")
    ap.add_argument("--out", type=Path, default=SHIPPED_WHITENING)
    args = ap.parse_args()
    ds = Dataset.load(args.dataset)
    pipe = build("fusion-rmac-gem")  # default's extractor, unwhitened
    x, _ = cached_descriptors(ds, pipe, "fusion-rmac-gem", {}, ds.db_paths, "db")
    x = x[np.linalg.norm(x, axis=1) > 0]  # unreadable images gave zero rows
    parts = [pipe.extractor.first.dim, pipe.extractor.second.dim]
    white = PartsWhitening(parts, **PARTS_WHITEN).fit(pipe.prepare(x))
    for w in white.whitenings:
        w.mean, w.proj = w.mean.astype(np.float16), w.proj.astype(np.float16)
    white.save(args.out)
    f = args.out / white.FILE
    print(f"{f}: learned on {len(x)} images of {ds.name}, parts {parts}, "
          f"{f.stat().st_size / 1e6:.1f} MB, sha1 {hashlib.sha1(f.read_bytes()).hexdigest()[:12]}")


if __name__ == "__main__":
    main()
