"""The image → text bridge learns a hidden linear relation from captioned images (synthetic data)."""
from __future__ import annotations

import numpy as np

from lookalike.text.bridge import BridgeConfig, TextBridge


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
