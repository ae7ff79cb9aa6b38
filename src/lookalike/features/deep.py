"""Deep global descriptors: a CNN backbone's conv map pooled by a named aggregator.

Each image is resized so its long side is ``max_side × scale`` for every scale (and mirrored when
``flip``); every variant's map is pooled, L2-normalised, summed, and the sum L2-normalised.
Region queries pool only the feature-map cells under a box; ``foreground="scda"`` or ``"cam"``
first finds the object's box from the SCDA mask or the top class activation map.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from lookalike.errors import BadInputError
from PIL import Image

from lookalike.features.base import Extractor
from lookalike.io import load_image
from lookalike.features.aggregators import AGGREGATORS, PoolContext
from lookalike.vectors import l2n
from lookalike.features.aggregators.cam import class_maps, top_classes
from lookalike.features.aggregators.scda import scda_mask
from lookalike.features.backbone import OnnxBackbone

__all__ = ["DeepExtractor", "resize_max_side"]

Box = tuple[float, float, float, float]  # (x, y, w, h) in pixels
RelBox = tuple[float, float, float, float]  # (x0, y0, x1, y1) as fractions of width / height


def resize_max_side(rgb: np.ndarray, max_side: int, snap: int | None = None, min_side: int = 32) -> np.ndarray:
    """Resize so the longer side is ``max_side`` (no crop). With ``snap``, the shorter side is
    rounded to a multiple of ``snap`` pixels (a slight aspect change), so that images of similar
    shape share one size and can be batched together. A shorter side below ``min_side`` (a very
    elongated image: the network needs a few cells each way) is padded by repeating the edge."""
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    size = [max(1, round(w * scale)), max(1, round(h * scale))]
    if snap:
        short = int(np.argmin(size))
        size[short] = max(snap, int(round(size[short] / snap)) * snap)
    out = rgb if (size[0], size[1]) == (w, h) else np.asarray(Image.fromarray(rgb).resize(tuple(size), Image.BICUBIC))
    if min(out.shape[:2]) < min_side:
        ph, pw = max(0, min_side - out.shape[0]), max(0, min_side - out.shape[1])
        out = np.pad(out, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="edge")
    return out


def mask_box(mask: np.ndarray) -> RelBox:
    """Bounding box of a boolean (h, w) mask as fractions (the whole map when empty)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return (0.0, 0.0, 1.0, 1.0)
    h, w = mask.shape
    return (float(xs.min() / w), float(ys.min() / h), float((xs.max() + 1) / w), float((ys.max() + 1) / h))


def crop_map(fmap: np.ndarray, box: RelBox) -> np.ndarray:
    """The cells of a (C, h, w) map covered by a fractional box (at least one cell)."""
    _, h, w = fmap.shape
    x0, y0, x1, y1 = box
    c0 = min(w - 1, max(0, math.floor(x0 * w + 1e-6)))
    r0 = min(h - 1, max(0, math.floor(y0 * h + 1e-6)))
    c1 = max(c0 + 1, min(w, math.ceil(x1 * w - 1e-6)))
    r1 = max(r0 + 1, min(h, math.ceil(y1 * h - 1e-6)))
    return fmap[:, r0:r1, c0:c1]


def turn_box(box: RelBox, turns: int) -> RelBox:
    """A fractional box of an image as it lies in the image turned by ``np.rot90(image, turns)``
    (a quarter turn maps the point (x, y) to (y, 1 - x))."""
    x0, y0, x1, y1 = box
    for _ in range(turns % 4):
        x0, y0, x1, y1 = y0, 1.0 - x1, y1, 1.0 - x0
    return (x0, y0, x1, y1)


class DeepExtractor(Extractor):
    """Backbone conv map -> aggregator -> L2; optional averaging over scales, the mirror image and
    the four quarter turns (``turns``: for images without an up, such as aerial photos)."""

    metric = "ip"
    gives_logits = True

    def __init__(self, backbone: str = "efficientnet-lite2", aggregator: str = "gem",
                 max_side: int = 352, scales: Sequence[float] = (1.0,), flip: bool = False,
                 turns: bool = False, weights: str | None = None, foreground: str | None = None,
                 threads: int | None = None, snap: int | None = None, **params: Any) -> None:
        if foreground not in (None, "scda", "cam"):
            raise BadInputError(f"foreground must be None, 'scda' or 'cam', not {foreground!r}")
        self.backbone_name, self.aggregator, self.params = backbone, aggregator, params
        self.max_side, self.scales, self.flip, self.weights = max_side, tuple(scales), flip, weights
        self.turns = bool(turns)
        self.foreground, self.threads, self.snap = foreground, threads, snap
        self._pool = AGGREGATORS.get(aggregator)
        self._net: OnnxBackbone | None = None
        self.name = aggregator
        self.dim = self._probe_dim()

    @property
    def net(self) -> OnnxBackbone:
        if self._net is None:
            self._net = OnnxBackbone(self.backbone_name, self.weights, threads=self.threads)
        return self._net

    def _needs_classifier(self) -> bool:
        return self.aggregator == "cam" or self.foreground == "cam"

    def _probe_dim(self) -> int:
        fmap = np.random.default_rng(0).random((1, 1280, 4, 4), dtype=np.float32)
        ctx = PoolContext(logits=np.zeros((1, 1000), np.float32),
                          fc_weight=np.ones((1000, 1280), np.float32))
        return int(self._pool(fmap, ctx, **self.params).shape[1])

    def context(self, logits: np.ndarray) -> PoolContext:
        """The pooling context for one image's logits (classifier filled in when CAM needs it)."""
        ctx = PoolContext(logits=np.asarray(logits, np.float32).reshape(1, -1))
        if self._needs_classifier():
            ctx.fc_weight, ctx.fc_bias = self.net.classifier()
        return ctx

    # -- backbone passes ---------------------------------------------------------------------
    @property
    def sides(self) -> list[int]:
        """The long side of each scale's variant."""
        return [max(32, round(self.max_side * s)) for s in self.scales]

    @property
    def decode_side(self) -> int:
        """Every variant is resized from the decoded image: it need not be larger than the largest."""
        return max(self.sides)

    def variants(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The resized variants of one image, one per scale, all from the same decoded image
        (thread-safe; no inference)."""
        return [resize_max_side(rgb, side, self.snap) for side in self.sides]

    def feature_maps(self, prepared: Sequence[list[np.ndarray]]
                     ) -> Iterator[tuple[int, int, bool, int, np.ndarray, np.ndarray]]:
        """(image index, scale index, flipped, quarter turns, fmap (C, h, w), logits (1000,)) for
        every variant: each scale, mirrored when ``flip``, turned 0-3 times when ``turns``."""
        for si in range(len(self.scales)):
            batch = [p[si] for p in prepared]
            for flipped in (False, True) if self.flip else (False,):
                ims = [np.ascontiguousarray(v[:, ::-1]) for v in batch] if flipped else batch
                for turn in range(4 if self.turns else 1):
                    turned = [np.ascontiguousarray(np.rot90(v, turn)) for v in ims] if turn else ims
                    for i, (fmap, logits) in enumerate(self.net.run(turned)):
                        yield i, si, flipped, turn, fmap, logits

    def localise_map(self, fmap: np.ndarray, logits: np.ndarray) -> RelBox:
        """Foreground box (fractions) from one map: SCDA mask, or the top class's CAM above its mean."""
        if self.foreground == "cam":
            weight, _ = self.net.classifier()
            cam = class_maps(fmap[None], weight, top_classes(logits[None], 1))[0, 0]
            return mask_box(scda_mask(cam[None]))
        return mask_box(scda_mask(fmap))

    def pool_map(self, fmap: np.ndarray, logits: np.ndarray, box: RelBox | None = None) -> np.ndarray:
        """One L2-normalised descriptor (dim,) from one map, restricted to ``box`` or the foreground."""
        if box is None and self.foreground:
            box = self.localise_map(fmap, logits)
        if box is not None:
            fmap = crop_map(fmap, box)
        return l2n(self._pool(fmap[None], self.context(logits), **self.params))[0]

    def _describe_prepared(self, prepared: Sequence[list[np.ndarray]],
                           boxes: Sequence[RelBox | None] | None = None,
                           others: Sequence["DeepExtractor"] = ()) -> tuple[np.ndarray, np.ndarray]:
        """(N, dim) descriptors, or with ``others`` the horizontal stack of every extractor's
        descriptors (each L2-normalised) from the same backbone passes; and the first-scale logits."""
        exs = [self, *others]
        totals = [np.zeros((len(prepared), e.dim), np.float64) for e in exs]
        logits_out = np.zeros((len(prepared), 1000), np.float32)
        for i, si, flipped, turn, fmap, logits in self.feature_maps(prepared):
            box = boxes[i] if boxes is not None else None
            if box is not None and flipped:
                box = (1.0 - box[2], box[1], 1.0 - box[0], box[3])
            if box is not None and turn:
                box = turn_box(box, turn)
            for e, total in zip(exs, totals):
                total[i] += e.pool_map(fmap, logits, box)
            if si == 0 and not flipped and not turn:
                logits_out[i] = logits
        return np.hstack([l2n(t.astype(np.float32)) for t in totals]), logits_out

    def shares_pass(self, other: object) -> bool:
        """True when ``other`` runs the same backbone passes (only the pooling differs)."""
        keys = ("backbone_name", "weights", "max_side", "scales", "flip", "turns", "snap")
        return isinstance(other, DeepExtractor) and all(getattr(self, k) == getattr(other, k) for k in keys)

    def describe_together(self, images: Sequence[np.ndarray], others: Sequence["DeepExtractor"]
                          ) -> tuple[np.ndarray, np.ndarray]:
        """[self | other ...] descriptors from one set of backbone passes (see ``shares_pass``), and
        the ImageNet logits (N, 1000) of the first scale."""
        if not all(self.shares_pass(o) for o in others):
            raise ValueError("describe_together needs extractors with the same backbone passes")
        return self._describe_prepared([self.variants(im) for im in images], others=others)

    # -- public API --------------------------------------------------------------------------
    def describe_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors (N, dim) and the ImageNet logits (N, 1000) of the first scale."""
        return self._describe_prepared([self.variants(im) for im in images])

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.describe_with_logits(images)[0]

    def localise(self, image: np.ndarray, method: str = "scda") -> Box:
        """The foreground box (x, y, w, h) in pixels, found from the SCDA mask or the top CAM."""
        if method not in ("scda", "cam"):
            raise BadInputError(f"method must be 'scda' or 'cam', not {method!r}")
        prev, self.foreground = self.foreground, method
        try:
            fmap, logits = self.net.run([self.variants(image)[0]])[0]
            x0, y0, x1, y1 = self.localise_map(fmap, logits)
        finally:
            self.foreground = prev
        h, w = image.shape[:2]
        return (float(x0 * w), float(y0 * h), float((x1 - x0) * w), float((y1 - y0) * h))

    def iter_prepared(self, paths: Sequence[str | Path], batch: int = 16,
                      workers: int = 2) -> Iterator[list[list[np.ndarray]]]:
        """Batches of prepared images; the next batch is decoded and resized in threads meanwhile."""
        load = lambda p: self.variants(load_image(p, reduce_to=self.decode_side))  # noqa: E731
        chunks = [list(paths[s:s + batch]) for s in range(0, len(paths), batch)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(load, p) for p in chunks[0]]
            for k in range(len(chunks)):
                prepared = [f.result() for f in futures]
                if k + 1 < len(chunks):
                    futures = [pool.submit(load, p) for p in chunks[k + 1]]
                yield prepared

    def describe_paths(self, paths: Sequence[str | Path], batch: int = 16,
                       workers: int = 2) -> np.ndarray:
        """Descriptors of image files; decoding and resizing run in threads while the network runs."""
        out = np.zeros((len(paths), self.dim), np.float32)
        for k, prepared in enumerate(self.iter_prepared(paths, batch, workers)):
            out[k * batch:k * batch + len(prepared)] = self._describe_prepared(prepared)[0]
        return out

    def config(self) -> dict[str, Any]:
        return {"extractor": "deep", "backbone": self.backbone_name, "aggregator": self.aggregator,
                "params": self.params, "max_side": self.max_side, "scales": list(self.scales),
                "flip": self.flip, **({"turns": True} if self.turns else {}),
                "weights": self.weights, "foreground": self.foreground,
                **({"snap": self.snap} if self.snap else {})}
