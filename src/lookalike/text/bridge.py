"""A learned bridge from image descriptors (e.g. GeM EfficientNet-Lite2 vectors) into the sentence
embedding space, trained on captioned images with a symmetric InfoNCE loss.

Optionally the input also holds the image's ImageNet class probabilities (``class_probs``), flattened
(``p ** class_power``, rescaled to sum 1): during training they enter as their weighted class-prompt
embedding (``flat_probs @ class_embeddings``); that linear map is folded into the first layer, so
the saved bridge takes ``[descriptor, class probabilities]`` and needs no text encoder.

Training needs PyTorch; the saved file (``.npz``: weights and settings) is applied with NumPy, so
searching never imports torch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.text.classes import softmax
from lookalike.text.store import TOP_CLASSES

BRIDGE_FILE = "text_bridge.npz"
REF_ROWS = 4096  # training texts kept with a bridge to measure each image's hubness
HUB_K = 10  # an image's hubness: its mean cosine with its HUB_K nearest training texts


@dataclass
class BridgeConfig:
    hidden: int = 0  # 0: a single linear map
    dropout: float = 0.5
    input_dropout: float = 0.8
    standardize: bool = False  # centre and scale each input dimension (training statistics)
    temperature: float = 0.07
    epochs: int = 500
    batch: int = 800  # large batches: more negatives per caption
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1  # small matrices: more threads only add contention
    class_power: float = 0.5  # flattening of the class probabilities (1: as they are)
    class_inputs: int = 0  # set by ``fit``: class probabilities appended to the descriptor (0: none)


def class_probs(logits: np.ndarray, top: int = TOP_CLASSES) -> np.ndarray:
    """(N, C) softmax of ImageNet logits keeping each row's ``top`` classes (as ``text_classes`` stores them)."""
    p = softmax(np.atleast_2d(np.asarray(logits, np.float32)))
    cut = -np.sort(-p, axis=1)[:, top - 1:top]
    return np.where(p >= cut, p, 0.0).astype(np.float32)


class TextBridge:
    """``project(image_vectors) -> (N, text_dim)`` unit rows comparable with sentence embeddings."""

    def __init__(self, config: BridgeConfig | None = None) -> None:
        self.config = config or BridgeConfig()
        self.weights: dict[str, np.ndarray] = {}

    @property
    def fitted(self) -> bool:
        return bool(self.weights)

    @property
    def in_dim(self) -> int:
        """Descriptor dimension (class probabilities not included)."""
        return int(self.weights["w0"].shape[1]) - self.config.class_inputs

    def fit(self, image_vectors: np.ndarray, text_vectors: np.ndarray, owner: np.ndarray,
            class_probs: np.ndarray | None = None, class_embeddings: np.ndarray | None = None) -> "TextBridge":
        """Learn from captions: ``text_vectors[j]`` (unit sentence embeddings) describes image
        ``owner[j]`` (a row of ``image_vectors``). Each step draws a batch of distinct images and one
        of their captions; the loss is symmetric InfoNCE over the batch. With ``class_probs`` (N, C)
        and ``class_embeddings`` (C, text_dim) the input also holds the class probabilities."""
        import torch
        import torch.nn.functional as F

        c = self.config
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, c.threads))
        try:
            return self._fit(torch, F, image_vectors, text_vectors, owner, class_probs, class_embeddings)
        finally:
            torch.set_num_threads(prev_threads)

    def _fit(self, torch, F, image_vectors, text_vectors, owner, class_probs, class_embeddings) -> "TextBridge":
        c = self.config
        torch.manual_seed(c.seed)
        X0 = np.asarray(image_vectors, np.float32)
        d = X0.shape[1]
        if class_probs is not None:
            X0 = np.hstack([X0, self._flatten(class_probs) @ np.asarray(class_embeddings, np.float32)])
        mu = X0.mean(0) if c.standardize else np.zeros(X0.shape[1], np.float32)
        sd = X0.std(0) + 1e-6 if c.standardize else np.ones(X0.shape[1], np.float32)
        X = torch.as_tensor((X0 - mu) / sd)
        T = torch.as_tensor(np.asarray(text_vectors, np.float32))
        owner = np.asarray(owner, np.int64)
        caps = [np.nonzero(owner == i)[0] for i in range(len(X))]
        have = np.array([i for i in range(len(X)) if len(caps[i])], np.int64)
        layers: list[torch.nn.Module] = [torch.nn.Dropout(c.input_dropout)]
        if c.hidden:
            layers += [torch.nn.Linear(X.shape[1], c.hidden), torch.nn.GELU(approximate="tanh"), torch.nn.Dropout(c.dropout),
                       torch.nn.Linear(c.hidden, T.shape[1])]
        else:
            layers += [torch.nn.Linear(X.shape[1], T.shape[1])]
        net = torch.nn.Sequential(*layers)
        opt = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        steps = max(1, len(have) // c.batch) * c.epochs
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        rng = np.random.default_rng(c.seed)
        net.train()
        for _ in range(c.epochs):
            perm = have[rng.permutation(len(have))]
            for s in range(0, max(1, len(perm) - c.batch + 1), c.batch):
                imgs = perm[s:s + c.batch]
                cap = np.array([rng.choice(caps[i]) for i in imgs])
                z = F.normalize(net(X[imgs]), dim=-1)
                logits = z @ T[cap].T / c.temperature
                target = torch.arange(len(imgs))
                loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        lin = [m for m in net if isinstance(m, torch.nn.Linear)]
        self.weights = {}
        for k, m in enumerate(lin):
            self.weights[f"w{k}"] = m.weight.detach().numpy().astype(np.float32)
            self.weights[f"b{k}"] = m.bias.detach().numpy().astype(np.float32)
        # fold the standardisation (and the class-prompt embedding) into the first layer
        w = self.weights["w0"] / sd
        self.weights["b0"] = (self.weights["b0"] - w @ mu).astype(np.float32)
        if class_probs is not None:
            w = np.hstack([w[:, :d], w[:, d:] @ np.asarray(class_embeddings, np.float32).T])
        self.weights["w0"] = w.astype(np.float32)
        self.config.class_inputs = w.shape[1] - d
        T0 = np.asarray(text_vectors, np.float32)
        keep = np.unique(np.linspace(0, len(T0) - 1, min(REF_ROWS, len(T0))).astype(np.int64))
        self.weights["ref"] = T0[keep].astype(np.float16)
        return self

    def hubness(self, projected: np.ndarray) -> np.ndarray | None:
        """(N,) each projected image's mean cosine with its ``HUB_K`` nearest training texts (None
        for a bridge saved without them). Images close to many texts ("hubs") come up for too many
        queries; subtracting part of this (``fusion.HUB_PENALTY``) ranks them fairly (CSLS)."""
        ref = self.weights.get("ref")
        if ref is None or not len(ref):
            return None
        sims = np.asarray(projected, np.float32) @ ref.astype(np.float32).T
        k = min(HUB_K, sims.shape[1])
        return np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(axis=1).astype(np.float32)

    def _flatten(self, class_probs: np.ndarray) -> np.ndarray:
        p = np.asarray(class_probs, np.float32)
        p = np.where(p > 0, np.maximum(p, 1e-30) ** self.config.class_power, 0.0)
        return (p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def project(self, image_vectors: np.ndarray, class_probs: np.ndarray | None = None) -> np.ndarray:
        """Unit rows in the text space; ``class_probs`` (see ``class_probs()``) if trained with them."""
        if not self.fitted:
            raise RuntimeError("the bridge is not trained")
        x = np.asarray(image_vectors, np.float32)
        if self.config.class_inputs:
            if class_probs is None:
                raise ValueError("this bridge also needs the images' class probabilities")
            x = np.hstack([x, self._flatten(class_probs)])
        n = len([k for k in self.weights if k.startswith("w")])
        for k in range(n):
            x = x @ self.weights[f"w{k}"].T + self.weights[f"b{k}"]
            if k < n - 1:  # GELU, tanh form (as trained)
                x = 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))
        return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / BRIDGE_FILE
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        cfg = {f"cfg_{k}": np.asarray(v) for k, v in self.config.__dict__.items()}
        np.savez(tmp, **self.weights, **cfg)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TextBridge":
        path = Path(path)
        if path.is_dir():
            path = path / BRIDGE_FILE
        z = np.load(path)
        cfg = BridgeConfig(**{k[4:]: z[k].item() for k in z.files if k.startswith("cfg_")})
        b = cls(cfg)
        b.weights = {k: z[k] for k in z.files if not k.startswith("cfg_")}
        if "mu" in b.weights:  # older files: standardisation not folded into the first layer
            mu, sd = b.weights.pop("mu"), b.weights.pop("sd")
            b.weights["b0"] = b.weights["b0"] - (b.weights["w0"] / sd) @ mu
            b.weights["w0"] = b.weights["w0"] / sd
        return b
