"""Post-processing steps on descriptor matrices, and fusion of two extractors.

Every step has the same shape: ``fit(X)`` (learn from an (N, D) matrix; a no-op when stateless),
``apply(X) -> (N, D')`` float32, ``save(dir)`` / ``load(dir)`` (learned state as ``.npz`` in the
index directory), ``config() -> dict`` and ``dim_out(dim_in)``. Steps are registered by name in
``POSTPROCESS``: ``l2``, ``power`` (signed square root), ``pcaw`` (PCA-whitening), ``pcaw-parts``
(PCA-whitening of each part of a fused descriptor on its own).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lookalike.vectors import l2n
from lookalike.registry import Registry

POSTPROCESS: Registry[Callable[..., "Step"]] = Registry("post-processing step")


class Step:
    """A stateless step; subclasses with learned state override fit/save/load."""

    name = "step"
    fitted = True

    def fit(self, x: np.ndarray) -> "Step":
        return self

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        """Nothing to save."""

    def load(self, directory: Path) -> "Step":
        return self

    def dim_out(self, dim_in: int) -> int:
        return dim_in

    def unfitted_output(self, x: np.ndarray) -> np.ndarray:
        """Zeros of the output shape (what a store is sized from before the fit)."""
        return np.zeros((len(x), self.dim_out(x.shape[1])), np.float32)

    def config(self) -> dict[str, Any]:
        return {"step": self.name}


@POSTPROCESS.register("l2")
class L2(Step):
    """Rows scaled to unit L2 norm."""

    name = "l2"

    def apply(self, x: np.ndarray) -> np.ndarray:
        return l2n(np.asarray(x, np.float32))


@POSTPROCESS.register("power")
class Power(Step):
    """Signed power normalisation sign(x)·|x|^alpha (alpha=0.5: signed square root), then L2."""

    name = "power"

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return l2n(np.sign(x) * np.power(np.abs(x), self.alpha))

    def config(self) -> dict[str, Any]:
        return {"step": self.name, "alpha": self.alpha}


def compact(a: np.ndarray) -> np.ndarray:
    """``a`` as float16 when that loses nothing (e.g. a whitening shipped in float16), else as is:
    halves the file without changing a single value."""
    half = a.astype(np.float16)
    return half if np.array_equal(half.astype(a.dtype), a) else a


def f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32)


@POSTPROCESS.register("pcaw")
class PCAWhitening(Step):
    """PCA-whitening learned on a matrix: centre, project on the top ``dim`` principal axes,
    divide by sqrt(eigenvalue + eps·largest eigenvalue), L2-normalise. The output always has
    ``dim`` (default: the input dimension) columns; axes the sample cannot support (beyond N-1)
    are zero columns, so the vector store's dimension does not depend on the sample size."""

    name = "pcaw"
    FILE = "pcaw.npz"

    def __init__(self, dim: int | None = None, eps: float = 1e-5) -> None:
        self.dim, self.eps = dim, eps
        self.mean: np.ndarray | None = None
        self.proj: np.ndarray | None = None

    @property
    def fitted(self) -> bool:  # type: ignore[override]
        return self.proj is not None

    def fit(self, x: np.ndarray) -> "PCAWhitening":
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError("PCA-whitening needs an (N >= 2, D) matrix")
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        if len(x) < x.shape[1]:  # fewer samples than dimensions: thin SVD is cheaper
            _, sv, vt = np.linalg.svd(xc, full_matrices=False)
            vals, vecs = sv**2 / len(x), vt.T
        else:
            vals, vecs = np.linalg.eigh(xc.T @ xc / len(x))
            order = np.argsort(vals)[::-1]
            vals, vecs = vals[order], vecs[:, order]
        out = min(self.dim or x.shape[1], x.shape[1])
        keep = min(out, len(x) - 1)
        vals, vecs = np.maximum(vals[:keep], 0.0), vecs[:, :keep]
        self.proj = np.zeros((x.shape[1], out), np.float32)
        self.proj[:, :keep] = vecs / np.sqrt(vals + self.eps * max(float(vals[0]), 1e-12))
        self.mean = self.mean.astype(np.float32)
        return self

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.proj is None or self.mean is None:
            raise RuntimeError("pcaw is not fitted: call fit() or load() first")
        return l2n((np.asarray(x, np.float32) - self.mean) @ self.proj)

    def dim_out(self, dim_in: int) -> int:
        return int(self.proj.shape[1]) if self.proj is not None else min(self.dim or dim_in, dim_in)

    def save(self, directory: Path) -> None:
        if self.proj is None:
            raise RuntimeError("pcaw is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (self.FILE + ".tmp.npz")
        np.savez(tmp, mean=compact(self.mean), proj=compact(self.proj), eps=self.eps)
        tmp.replace(directory / self.FILE)

    def load(self, directory: Path) -> "PCAWhitening":
        with np.load(Path(directory) / self.FILE) as z:
            self.mean, self.proj, self.eps = f32(z["mean"]), f32(z["proj"]), float(z["eps"])
        self.dim = int(self.proj.shape[1])
        return self

    def config(self) -> dict[str, Any]:
        return {"step": self.name, "dim": self.dim, "eps": self.eps}


@POSTPROCESS.register("pcaw-parts")
class PartsWhitening(Step):
    """PCA-whitening learned for each block of columns on its own (the parts of a fused descriptor),
    the whitened parts concatenated with equal weight and L2-normalised. Whitening the parts apart
    keeps one part's strongest axes from drowning the other's."""

    name = "pcaw-parts"
    FILE = "pcaw-parts.npz"

    def __init__(self, parts: Sequence[int], dim: int | None = None, eps: float = 1e-5) -> None:
        self.parts, self.dim, self.eps = [int(p) for p in parts], dim, eps
        self.whitenings = [PCAWhitening(dim, eps) for _ in self.parts]

    @property
    def fitted(self) -> bool:  # type: ignore[override]
        return all(w.fitted for w in self.whitenings)

    def _split(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x, np.float32)
        if x.shape[1] != sum(self.parts):
            raise ValueError(f"pcaw-parts expects {sum(self.parts)} columns ({self.parts}), got {x.shape[1]}")
        return np.split(x, np.cumsum(self.parts)[:-1], axis=1)

    def fit(self, x: np.ndarray) -> "PartsWhitening":
        for w, part in zip(self.whitenings, self._split(x)):
            w.fit(part)
        return self

    def apply(self, x: np.ndarray) -> np.ndarray:
        return l2n(np.hstack([w.apply(part) for w, part in zip(self.whitenings, self._split(x))]))

    def dim_out(self, dim_in: int) -> int:
        return sum(w.dim_out(p) for w, p in zip(self.whitenings, self.parts))

    def save(self, directory: Path) -> None:
        if not self.fitted:
            raise RuntimeError("pcaw-parts is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"{k}{i}": compact(getattr(w, k)) for i, w in enumerate(self.whitenings) for k in ("mean", "proj")}
        tmp = directory / (self.FILE + ".tmp.npz")
        np.savez(tmp, eps=self.eps, **arrays)
        tmp.replace(directory / self.FILE)

    def load(self, directory: Path) -> "PartsWhitening":
        with np.load(Path(directory) / self.FILE) as z:
            for i, w in enumerate(self.whitenings):
                w.mean, w.proj, w.eps = f32(z[f"mean{i}"]), f32(z[f"proj{i}"]), float(z["eps"])
                w.dim = int(w.proj.shape[1])
        return self

    def config(self) -> dict[str, Any]:
        return {"step": self.name, "parts": self.parts, "dim": self.dim, "eps": self.eps}


def make_step(config: dict[str, Any] | str) -> Step:
    """A step from its name or its ``config()`` dict."""
    if isinstance(config, str):
        return POSTPROCESS.get(config)()
    params = {k: v for k, v in config.items() if k != "step"}
    return POSTPROCESS.get(config["step"])(**params)


class LearnedWhitening(Step):
    """A whitening learned from matching pairs by ``lookalike train`` (``train.whiten``):
    (x − mean) · P, then L2."""

    name = "lw"
    FILE = "whiten.npz"

    def __init__(self, mean: np.ndarray | None = None, proj: np.ndarray | None = None) -> None:
        self.mean, self.proj = mean, proj

    @property
    def fitted(self) -> bool:  # type: ignore[override]
        return self.proj is not None

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.proj is None or self.mean is None:
            raise RuntimeError("learned whitening is not loaded")  # a bug: load() comes first
        return l2n((np.asarray(x, np.float32) - self.mean) @ self.proj)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / self.FILE, mean=self.mean, proj=self.proj)

    def load(self, directory: Path) -> "LearnedWhitening":
        with np.load(Path(directory) / self.FILE) as z:
            self.mean, self.proj = z["mean"], z["proj"]
        return self

    def config(self) -> dict[str, Any]:
        return {"step": self.name, "dim": None if self.proj is None else int(self.proj.shape[1])}
