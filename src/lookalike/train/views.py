"""Augmented views of training images pushed through the frozen trunk once, cached on disk.

View 0 is the image as it is indexed (long side ``max_side``). The other views depend on the
augmentation: ``dihedral`` turns the image by a multiple of 90 degrees and/or mirrors it (images
seen from above, textures and documents scanned any way round have no "up"); view ``v`` is
transform ``v``, so views 0-3 are the four quarter turns a turn-averaged descriptor is made of.
``crops`` takes random resized crops,
mirrored half of the time, with colour jitter. Augmentation has to happen before the trunk, so
each view is one trunk pass, computed once and reused every epoch.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance

from lookalike.config import cache_dir
from lookalike.features.deep import resize_max_side
from lookalike.io import load_image

AUG_VERSION = 3
AUGMENTATIONS = ("dihedral", "crops")


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random resized crop (50-100 % of the area), a coin-flip mirror and colour jitter."""
    h, w = rgb.shape[:2]
    area = rng.uniform(0.5, 1.0) * h * w
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))) * w / h
    cw = int(min(w, round(np.sqrt(area * ratio))))
    ch = int(min(h, round(np.sqrt(area / ratio))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = Image.fromarray(rgb[y0:y0 + ch, x0:x0 + cw])
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhancer(im).enhance(float(rng.uniform(0.8, 1.2)))
    return np.asarray(im)


def dihedral(rgb: np.ndarray, k: int) -> np.ndarray:
    """Transform ``k`` (0..7) of the square's symmetry group: ``k % 4`` quarter turns, mirrored when k >= 4."""
    out = np.rot90(rgb, k % 4)
    if k >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _image_rng(path: Path, seed: int, what: str) -> np.random.Generator:
    """Seeded by the image's folder and name, so a moved dataset gets the same views."""
    where = f"{Path(path).parent.name}/{Path(path).name}"
    digest = hashlib.sha1(f"{seed}|{where}|{what}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def make_view(path: Path, view: int, max_side: int, seed: int, augmentation: str = "dihedral") -> np.ndarray:
    """The RGB input of one view of one image (view 0: no augmentation)."""
    rgb = load_image(path)
    if view > 0 and augmentation == "crops":
        rgb = augment(rgb, _image_rng(path, seed, str(view)))
    rgb = resize_max_side(rgb, max_side)
    if view > 0 and augmentation == "dihedral":
        rgb = dihedral(rgb, view % 8)
    return rgb


class TrunkCache:
    """Trunk outputs (C, h, w) float16 per (image, view), one ``.npy`` per entry under the cache."""

    def __init__(self, onnx_path: Path, max_side: int, seed: int = 0, mean: float = 127.0,
                 std: float = 128.0, threads: int | None = None, augmentation: str = "dihedral") -> None:
        import onnxruntime as ort

        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, not {augmentation!r}")
        self.max_side, self.seed, self.mean, self.std = max_side, seed, mean, std
        self.augmentation = augmentation
        self.dir = cache_dir() / "train" / onnx_path.stem
        self.dir.mkdir(parents=True, exist_ok=True)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a shared CPU: no spinning
        self._sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def _file(self, path: Path, view: int) -> Path:
        st = os.stat(path)
        key = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.max_side}|{view}|{self.seed}|{AUG_VERSION}"
        if view > 0 and self.augmentation != "crops":  # view 0 is shared by every augmentation
            key += f"|{self.augmentation}"
        return self.dir / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".npy")

    def _run(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = [None] * len(images)  # type: ignore[list-item]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape[:2], []).append(i)
        for idx in groups.values():
            x = np.stack([((images[i].astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)
                          for i in idx])
            fmaps = self._sess.run(None, {"image": np.ascontiguousarray(x)})[0]
            for j, i in enumerate(idx):
                out[i] = fmaps[j]
        return out

    def maps(self, paths: Sequence[Path], views: int, progress: Callable[[int, int], None] | None = None,
             batch: int = 16) -> list[list[np.ndarray]]:
        """``maps[v][i]``: view ``v`` of image ``i``; missing entries are computed and cached."""
        jobs = [(i, v) for v in range(views) for i in range(len(paths))]
        out: list[list[np.ndarray]] = [[None] * len(paths) for _ in range(views)]  # type: ignore[list-item]
        todo = []
        for i, v in jobs:
            f = self._file(paths[i], v)
            if f.exists():
                out[v][i] = np.load(f)
            else:
                todo.append((i, v, f))
        done = len(jobs) - len(todo)
        if progress:
            progress(done, len(jobs))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for s in range(0, len(todo), batch):
                chunk = todo[s:s + batch]
                ims = list(pool.map(lambda j: make_view(paths[j[0]], j[1], self.max_side, self.seed,
                                                        self.augmentation), chunk))
                for (i, v, f), fmap in zip(chunk, self._run(ims)):
                    arr = fmap.astype(np.float16)
                    tmp = f.with_name(f.stem + f".{os.getpid()}.tmp.npy")
                    np.save(tmp, arr)
                    os.replace(tmp, f)
                    out[v][i] = arr
                done += len(chunk)
                if progress:
                    progress(done, len(jobs))
        return out
