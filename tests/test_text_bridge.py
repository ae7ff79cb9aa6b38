"""The image → text bridge learns a hidden linear relation from captioned images (synthetic data)."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.text.bridge import BridgeConfig, TextBridge, class_probs
from lookalike.text.classes import softmax


def _data(n: int, rng):
    A = rng.normal(size=(64, 32)).astype(np.float32)
    X = rng.normal(size=(n, 64)).astype(np.float32)
    T = np.repeat(X @ A, 2, axis=0) + 0.3 * rng.normal(size=(2 * n, 32)).astype(np.float32)  # 2 captions each
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    return X, T, np.repeat(np.arange(n), 2)


def test_bridge_retrieves_unseen_images(tmp_path):
    rng = np.random.default_rng(0)
    X, T, owner = _data(300, rng)
    train = owner < 250
    b = TextBridge(BridgeConfig(epochs=150, batch=64, input_dropout=0.1, lr=3e-3)).fit(X[:250], T[train], owner[train])
    Z = b.project(X[250:])
    S = T[~train] @ Z.T
    r1 = float((S.argmax(1) == owner[~train] - 250).mean())
    assert r1 > 0.6  # chance is 0.02
    path = b.save(tmp_path)
    assert path.name == "text_bridge.npz"
    assert np.allclose(TextBridge.load(tmp_path).project(X[250:]), Z, atol=1e-6)


def test_bridge_with_class_inputs(tmp_path):
    """Class probabilities enter through their class embeddings; the saved bridge takes them raw."""
    rng = np.random.default_rng(1)
    X, T, owner = _data(120, rng)
    logits = 3 * rng.normal(size=(120, 50)).astype(np.float32)
    P = class_probs(logits, top=5)
    assert ((P > 0).sum(1) == 5).all() and np.allclose(P.max(1), softmax(logits).max(1))
    E = rng.normal(size=(50, 32)).astype(np.float32)
    cfg = dict(epochs=20, batch=64, standardize=True)
    b = TextBridge(BridgeConfig(**cfg)).fit(X[:100], T[owner < 100], owner[owner < 100], P[:100], E)
    assert b.in_dim == 64 and b.config.class_inputs == 50
    Z = b.project(X[100:], P[100:])
    # the folded class embedding and standardisation give what the explicit input gives
    XC = np.hstack([X, b._flatten(P) @ E])
    explicit = TextBridge(BridgeConfig(**cfg)).fit(XC[:100], T[owner < 100], owner[owner < 100])
    assert np.allclose(explicit.project(XC[100:]), Z, atol=1e-4)
    loaded = TextBridge.load(b.save(tmp_path))
    assert loaded.config.class_inputs == 50 and np.allclose(loaded.project(X[100:], P[100:]), Z, atol=1e-6)
    with pytest.raises(ValueError):
        loaded.project(X[100:])
