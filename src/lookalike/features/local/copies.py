"""Is one image a copy of another (resized, re-compressed, cropped, turned, mirrored, recoloured,
framed, captioned), or only another shot of the same scene?

Two tests, each ending in the same measurement:

* by keypoints: SIFT matches between the two (and the mirror image of the second) must agree on
  one similarity transform (turn, uniform scale, shift; what copying does, unlike a new viewpoint,
  which brings parallax and perspective);
* by orientation: when the perceptual hashes say how the second image is turned, it is turned back
  and stretched onto the first (for pictures with too few keypoints).

The second image is then warped onto the first and compared block by block, after a blur wide
enough that JPEG blocking (8 pixels) does not decide: the median, over the textured blocks of their
overlap, of how well one image's block is a linear mix of the other's colours. A copy lines up
pixel for pixel (half its blocks or more agree at 0.999 and above, whatever the colour change; a
caption or a banner over a fifth of the picture spoils only its own blocks); another shot, even from
nearly the same place, rarely does. A keypoint alignment must also nest one frame in the other
(``NESTED``): two overlapping crops of one picture are matched only through the picture itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lookalike.features.hashes import inverse_orientation

WORK_SIDE = 320  # both images are compared at this longer side
BLOCK = 16  # pixels per block side at the working size
MIN_INLIERS = 10
MIN_BLOCKS = 6  # textured blocks needed in the overlap for a correlation to mean something
TEXTURE_STD = 4.0  # grey-level standard deviation below which a block is flat
# Gaussian sigma (working pixels) before blocks are compared: re-compression noise and JPEG's 8-pixel
# blocking out (2.5 left quality-10 copies at 0.67 recall on the copy benchmark)
BLUR = 5.0
# of the block correlations: the median, so that an overlay over a fifth of the picture (whose blocks
# disagree) does not decide; the strict threshold on it (``engine.duplicates.PRESETS``) keeps other
# shots out (chosen on half of the copy benchmark's scenes, BENCHMARKS.md)
QUANTILE = 0.5
# an image whose 8-pixel block edges are this much stronger than its other pixel steps (``blockiness``)
# was compressed hard (quality-10 copies measure 1.9-3.2, the benchmark's photos 0.8-1.8); its
# comparisons blur more (``BLOCKY_BLUR``), as a resized copy's do: its fine detail is gone
BLOCKY = 1.6
BLOCKY_BLUR = 8.0
SURE = 0.9995  # a score no preset's threshold refuses: no further test is tried
# a keypoint alignment counts only when the overlap covers this share of one of the two frames: a copy
# lies inside the other picture (a crop) or holds it whole (a border); another shot taken from nearly
# the same place usually overlaps it only in part (chosen on half of the copy benchmark's scenes)
NESTED = 0.98


@dataclass
class Prepared:
    """One image ready for comparison: grey at the working size, its SIFT keypoints and those of
    its mirror image."""

    grey: np.ndarray
    rgb: np.ndarray  # colour at the working size
    kpts: np.ndarray  # (N, 2) float32
    desc: np.ndarray  # (N, 128) float32 RootSIFT
    mkpts: np.ndarray  # keypoints of the mirror image, in the mirror image's coordinates
    mdesc: np.ndarray
    native: int  # the longer side of the image as given
    blocky: bool = False  # JPEG's 8-pixel blocking shows (``blockiness``): compared at ``BLOCKY_BLUR``


@dataclass
class CopyCheck:
    score: float  # median block correlation after alignment (0 when the images do not line up)
    inliers: int  # keypoint matches that agree with the similarity (0 for the orientation test)
    how: str  # "keypoints", "keypoints+mirror" or "orientation"
    blocks: int  # textured blocks compared
    residual: float = 0.0  # RMS distance of the inliers from the similarity, in the coarser image's pixels


_SIFT = None


def _sift():
    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=600)
    return _SIFT


def _detect(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kp, d = _sift().detectAndCompute(grey, None)
    if d is None or not kp:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    d = np.maximum(d, 0)
    d = np.sqrt(d / (d.sum(1, keepdims=True) + 1e-12)).astype(np.float32)  # RootSIFT
    return np.array([k.pt for k in kp], np.float32), d


def blockiness(rgb: np.ndarray) -> float:
    """How much stronger the grey steps across JPEG's 8-pixel block edges are than the other steps
    (about 1 for a clean picture; measured at the pixels given, where the blocks are 8 wide)."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ratios = []
    for steps in (np.abs(np.diff(g, axis=1)).mean(0), np.abs(np.diff(g, axis=0)).mean(1)):
        if len(steps) < 16:
            return 1.0
        edge = np.zeros(len(steps), bool)
        edge[7::8] = True
        ratios.append(steps[edge].mean() / (steps[~edge].mean() + 1e-6))
    return float(np.mean(ratios))


def prepare(rgb: np.ndarray) -> Prepared:
    """Grey image at ``WORK_SIDE`` and its keypoints (and its mirror image's); whether it shows
    JPEG blocking is measured on ``rgb`` as given (at its own pixels)."""
    rgb = np.ascontiguousarray(np.repeat(rgb[..., None], 3, 2) if rgb.ndim == 2 else rgb[..., :3])
    blocky = blockiness(rgb) >= BLOCKY
    h, w = rgb.shape[:2]
    s = WORK_SIDE / max(h, w)
    rgb = cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    k, d = _detect(grey)
    mk, md = _detect(np.ascontiguousarray(grey[:, ::-1]))
    return Prepared(grey, rgb, k, d, mk, md, max(h, w), blocky)


def _matches(da: np.ndarray, db: np.ndarray, ratio: float = 0.85) -> np.ndarray:
    if len(da) < 2 or len(db) < 2:
        return np.zeros((0, 2), np.int64)
    m = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [(p[0].queryIdx, p[0].trainIdx) for p in m if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    return np.array(good, np.int64).reshape(-1, 2)


def _similarity(pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The similarity mapping b's points onto a's, and its inlier mask."""
    none = np.zeros(len(pa), bool)
    if len(pa) < MIN_INLIERS:
        return None, none
    m, mask = cv2.estimateAffinePartial2D(pb.reshape(-1, 1, 2), pa.reshape(-1, 1, 2), method=cv2.RANSAC,
                                          ransacReprojThreshold=2.5, maxIters=2000, confidence=0.999)
    if m is None or mask is None:
        return None, none
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if not 0.05 < scale < 20:
        return None, none
    return m, mask.ravel().astype(bool)


def _coarse_unit(a: Prepared, b: Prepared, scale: float) -> float:
    """Size, in ``a``'s working pixels, of the coarsest pixel grid of the two images: residuals
    and blur are measured at the resolution both images really have."""
    return max(1.0, WORK_SIDE / a.native, scale * WORK_SIDE / b.native)


def _explained(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per block, the share of ``y``'s variance (n, P) that a linear mix of the channels of ``X``
    (n, P, 3) explains: 1 when one image's grey is a recolouring of the other's colours."""
    C = np.einsum("npi,npj->nij", X, X)
    C += (1e-3 * np.trace(C, axis1=1, axis2=2)[:, None, None] / 3 + 1e-3) * np.eye(3, dtype=C.dtype)
    c = np.einsum("npi,np->ni", X, y)
    beta = np.linalg.solve(C, c[..., None])[..., 0]
    return np.clip(np.einsum("ni,ni->n", beta, c) / ((y * y).sum(1) + 1e-9), 0, 1)


def block_correlation(a: np.ndarray, b: np.ndarray, valid: np.ndarray, sigma: float = BLUR) -> tuple[float, int]:
    """The ``QUANTILE`` over the textured blocks (those fully ``valid``) of how well each image's
    grey block is a linear mix of the other's colour channels (the multiple correlation: 1 for
    any per-pixel linear recolouring), after a Gaussian blur of ``sigma`` (re-compression noise).
    ``a`` and ``b`` are RGB (or grey) images of one size."""
    a = cv2.GaussianBlur(a.astype(np.float32), (0, 0), sigma)
    b = cv2.GaussianBlur(b.astype(np.float32), (0, 0), sigma)
    a = a if a.ndim == 3 else a[..., None].repeat(3, 2)
    b = b if b.ndim == 3 else b[..., None].repeat(3, 2)
    h, w = a.shape[:2]
    hb, wb = h // BLOCK, w // BLOCK
    if hb == 0 or wb == 0:
        return 0.0, 0

    def blocks(x: np.ndarray) -> np.ndarray:
        x = x[:hb * BLOCK, :wb * BLOCK].reshape(hb, BLOCK, wb, BLOCK, -1).transpose(0, 2, 1, 3, 4)
        return x.reshape(hb * wb, BLOCK * BLOCK, x.shape[-1])

    A, B = blocks(a), blocks(b)
    keep = blocks(valid.astype(np.float32)[..., None])[..., 0].min(1) > 0
    A, B = A[keep], B[keep]
    A = A - A.mean(1, keepdims=True)
    B = B - B.mean(1, keepdims=True)
    grey = np.array([0.299, 0.587, 0.114], np.float32)
    ya, yb = A @ grey, B @ grey
    textured = (ya.std(1) > TEXTURE_STD) & (yb.std(1) > TEXTURE_STD)
    if textured.sum() < MIN_BLOCKS:
        return 0.0, int(textured.sum())
    A, B, ya, yb = A[textured], B[textured], ya[textured], yb[textured]
    r = np.sqrt(np.maximum(_explained(A, yb), _explained(B, ya)))
    return float(np.quantile(r, QUANTILE)), int(textured.sum())


def _blur(a: Prepared, b_blocky: bool, unit: float) -> float:
    """The blur before blocks are compared: wider when either image shows JPEG blocking, and at
    the coarser image's resolution (``unit``)."""
    base = BLOCKY_BLUR if a.blocky or b_blocky else BLUR
    return float(np.hypot(base, 0.5 * unit)) if unit > 1.2 else base


def _warped_score(a: Prepared, b_rgb: np.ndarray, m: np.ndarray, unit: float,
                  b_blocky: bool = False) -> tuple[float, int, float]:
    """(score, textured blocks, nesting): the larger of the shares of each frame that the overlap
    covers (1 when one picture's frame lies inside the other's, as a crop's or a framed copy's
    does), and unless that is below ``NESTED`` (score 0), ``b_rgb`` warped by ``m`` onto ``a`` and
    compared."""
    h, w = a.grey.shape
    valid = cv2.warpAffine(np.ones(b_rgb.shape[:2], np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    overlap = float(np.count_nonzero(valid))
    nesting = max(overlap / valid.size, overlap / (b_rgb.shape[0] * b_rgb.shape[1] * abs(np.linalg.det(m[:, :2]))))
    if nesting < NESTED:  # the frames overlap only in part: another shot, panned (or two crops of one picture)
        return 0.0, 0, nesting
    warped = cv2.warpAffine(b_rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    s, n = block_correlation(a.rgb, warped, valid > 0, _blur(a, b_blocky, unit))
    return s, n, nesting


_TURN = {  # cv2 codes turning an image by ORIENTATIONS[k] (features.hashes), before any mirror
    "identity": (None, False), "mirror": (None, True), "rot90": (cv2.ROTATE_90_COUNTERCLOCKWISE, False),
    "rot180": (cv2.ROTATE_180, False), "rot270": (cv2.ROTATE_90_CLOCKWISE, False),
    "flip": (cv2.ROTATE_180, True), "transpose": (cv2.ROTATE_90_COUNTERCLOCKWISE, True),
    "transverse": (cv2.ROTATE_90_CLOCKWISE, True),
}


def _oriented(grey: np.ndarray, orientation: str) -> np.ndarray:
    """``grey`` (or RGB) turned the way PIL's transpose named ``orientation`` turns an image."""
    code, mirror = _TURN[orientation]
    x = grey[:, ::-1] if mirror else grey
    return np.ascontiguousarray(cv2.rotate(np.ascontiguousarray(x), code) if code is not None else x)


# the turn (``ORIENTATIONS`` name) a keypoint similarity stands for: (mirrored, quarter turns of its angle)
_TURN_OF_FIT = {(False, 0): "identity", (True, 0): "mirror", (False, 1): "rot90", (False, 2): "rot180",
                (False, 3): "rot270", (True, 2): "flip", (True, 3): "transpose", (True, 1): "transverse"}


def _turned_score(a: Prepared, b: Prepared, orientation: str) -> CopyCheck:
    """``b`` turned back (``b`` = ``orientation`` applied to ``a``) and stretched onto ``a``: no
    resampling at an angle, which at the strict threshold a warp by a fitted turn can cost."""
    back = _oriented(b.rgb, inverse_orientation(orientation))
    h, w = a.grey.shape
    stretched = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR)
    s, n = block_correlation(a.rgb, stretched, np.ones_like(a.grey, bool), _blur(a, b.blocky, 1.0))
    return CopyCheck(s, 0, "orientation", n)


def _full_frame_turn(a: Prepared, b: Prepared, t: np.ndarray, mirrored: bool) -> str | None:
    """The turn a keypoint similarity stands for, when it is within a degree of a right angle and
    maps ``b``'s whole frame onto ``a``'s (within 3 %): a turned or mirrored copy, uncropped."""
    quarters = np.degrees(np.arctan2(t[1, 0], t[0, 0])) / 90
    if abs(quarters - round(quarters)) > 1 / 90:
        return None
    hb, wb = b.grey.shape
    corners = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], np.float64) @ t[:, :2].T + t[:, 2]
    h, w = a.grey.shape
    lo, hi = corners.min(0), corners.max(0)
    if np.any(np.abs(lo) > 0.03 * np.array([w, h])) or np.any(np.abs(hi - [w, h]) > 0.03 * np.array([w, h])):
        return None
    return _TURN_OF_FIT[(mirrored, int(round(quarters)) % 4)]


def compare(a: Prepared, b: Prepared, orientation: str | None = None) -> CopyCheck:
    """How well ``b`` lines up with ``a`` as a copy: the best of the tests, the cheapest first,
    stopping at a score of ``SURE`` (which every threshold accepts). ``orientation``: how ``a``
    would have to be turned to look like ``b`` (from the perceptual hashes), when known. A
    keypoint fit that maps one whole frame onto the other is also tried as that exact turn (no
    resampling at an angle or a fraction of a pixel)."""
    best = CopyCheck(0.0, 0, "none", 0)
    if orientation is not None:
        best = _turned_score(a, b, orientation)
    turns = []
    for mirrored in (False, True):
        if best.score >= SURE:
            break
        kb, db = (b.mkpts, b.mdesc) if mirrored else (b.kpts, b.desc)
        m = _matches(a.desc, db)
        if len(m) < MIN_INLIERS:
            continue
        pa, pb = a.kpts[m[:, 0]], kb[m[:, 1]]
        t, mask = _similarity(pa, pb)
        if t is None or mask.sum() < MIN_INLIERS:
            continue
        unit = _coarse_unit(a, b, float(np.hypot(t[0, 0], t[1, 0])))
        err = np.linalg.norm(pb[mask] @ t[:, :2].T + t[:, 2] - pa[mask], axis=1)
        rgb_b = np.ascontiguousarray(b.rgb[:, ::-1]) if mirrored else b.rgb
        s, n, _ = _warped_score(a, rgb_b, t, unit, b.blocky)
        if s > best.score:
            best = CopyCheck(s, int(mask.sum()), "keypoints+mirror" if mirrored else "keypoints", n,
                             float(np.sqrt((err ** 2).mean())) / unit)
        turn = _full_frame_turn(a, b, t, mirrored)
        if turn not in (None, orientation):
            turns.append(turn)
    for turn in turns:
        if best.score >= SURE:
            break
        check = _turned_score(a, b, turn)
        if check.score > best.score:
            best = check
    return best
