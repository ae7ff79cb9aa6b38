"""Text rendered in images, read by RapidOCR (Chinese + English, ONNX, weights in the wheel).

OCR costs about a second per image on a CPU, so ``likely_has_text`` first looks cheaply (OpenCV,
a few ms) for text-like strokes: clusters of small, high-contrast components that a horizontal
closing joins into wide boxes. Images without any are skipped.
"""
from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from lookalike.features.deep import resize_max_side

_lock = threading.Lock()
_engine: Any = None
OCR_SIDE = 960  # OCR input long side
GATE_SIDE = 640


def likely_has_text(rgb: np.ndarray, min_boxes: int = 3) -> bool:
    """True if the image shows at least ``min_boxes`` text-line-like regions."""
    img = resize_max_side(rgb, GATE_SIDE) if max(rgb.shape[:2]) > GATE_SIDE else rgb
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    grad = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    _, bw = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if bw.mean() > 0.35 * 255:  # busy texture everywhere: the gradient says nothing
        bw = (grad > 80).astype(np.uint8) * 255
    joined = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    h_img = img.shape[0]
    boxes = 0
    for x, y, w, h, area in stats[1:]:
        if 6 <= h <= 0.25 * h_img and w >= 2.0 * h and w >= 24 and 0.2 <= area / float(w * h) <= 0.95:
            sub = bw[y:y + h, x:x + w]
            # strokes: several separate blobs inside the box (letters), not one solid bar
            k, _ = cv2.connectedComponents(sub)
            if k - 1 >= 3:
                boxes += 1
                if boxes >= min_boxes:
                    return True
    return False


def _ocr() -> Any:
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            _engine = RapidOCR()
        return _engine


def read_text(rgb: np.ndarray, min_score: float = 0.5, gate: bool = True) -> str:
    """The text lines found in an image, joined by spaces ("" if none, or if the gate says none)."""
    if gate and not likely_has_text(rgb):
        return ""
    img = resize_max_side(rgb, OCR_SIDE) if max(rgb.shape[:2]) > OCR_SIDE else rgb
    result, _ = _ocr()(np.ascontiguousarray(img[:, :, ::-1]))  # RapidOCR takes BGR
    lines = [str(r[1]).strip() for r in (result or []) if float(r[2]) >= min_score and str(r[1]).strip()]
    return " ".join(lines)
