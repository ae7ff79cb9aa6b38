"""Why did this result match? Draw the spatially verified local-feature matches side by side."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lookalike.features.local.keypoints import make_detector
from lookalike.features.local.verify import VerifyParams, verify_pair


def _load(path: str | Path, max_side: int | None) -> np.ndarray:
    try:
        from lookalike.io import load_image
    except ImportError:  # pragma: no cover - io.py not present
        from PIL import Image

        img = np.asarray(Image.open(path).convert("RGB"))
    else:
        img = load_image(path)
    if max_side and max(img.shape[:2]) > max_side:
        s = max_side / max(img.shape[:2])
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return img


def explain_images(query: np.ndarray, result: np.ndarray, kind: str = "sift", max_kpts: int = 1000,
                   params: VerifyParams | None = None, max_drawn: int = 80) -> tuple[np.ndarray, int]:
    """(RGB drawing of the inlier matches, inlier count) for two RGB images; at most
    ``max_drawn`` matches are drawn (evenly spread) so that the picture stays readable."""
    det = make_detector(kind, max_kpts=max_kpts, min_side=650 if kind != "xfeat" else None)
    fq, fr = det.detect(query), det.detect(result)
    p = params or VerifyParams(max_kpts=max_kpts)
    n, inl, _ = verify_pair(fq, fr, p)
    kq = [cv2.KeyPoint(float(x), float(y), float(s)) for x, y, s, _ in fq.kpts[:p.max_kpts]]
    kr = [cv2.KeyPoint(float(x), float(y), float(s)) for x, y, s, _ in fr.kpts[:p.max_kpts]]
    shown = inl[np.linspace(0, len(inl) - 1, min(len(inl), max_drawn)).astype(int)] if len(inl) else inl
    dm = [cv2.DMatch(int(a), int(b), 0.0) for a, b in shown]
    canvas = cv2.drawMatches(np.ascontiguousarray(query), kq, np.ascontiguousarray(result), kr, dm, None,
                             matchColor=(0, 255, 0), singlePointColor=(255, 160, 0),
                             flags=cv2.DrawMatchesFlags_NOT_DRAW_SINGLE_POINTS)
    cv2.putText(canvas, f"{n} inliers", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2, cv2.LINE_AA)
    return canvas, n


def explain(query_path: str | Path, result_path: str | Path, out_png: str | Path, kind: str = "sift",
            max_side: int | None = 1024) -> int:
    """Write the drawing of the verified matches between two image files to ``out_png``;
    return the number of inliers."""
    canvas, n = explain_images(_load(query_path, max_side), _load(result_path, max_side), kind)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {out}")
    return n
