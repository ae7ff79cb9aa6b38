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


def test_hubness_is_kept_with_the_bridge_and_ranks_hubs_down(tmp_path):
    """A bridge keeps (part of) its training texts; an image bridged close to many of them (a hub)
    is penalised in the ranking, while the readable score still comes from the plain cosine."""
    from lookalike.text.bridges import Bridges, store_projection
    from lookalike.text.fusion import HUB_PENALTY
    from lookalike.text.store import TextIndex

    rng = np.random.default_rng(3)
    X, T, owner = _data(80, rng)
    b = TextBridge(BridgeConfig(epochs=30, batch=32, input_dropout=0.1)).fit(X, T, owner)
    assert b.weights["ref"].shape == (len(T), T.shape[1])
    heads = Bridges({"use": b})
    heads.save(tmp_path)
    again = Bridges.load(tmp_path).heads["use"]
    Z = b.project(X)
    np.testing.assert_allclose(again.hubness(Z), b.hubness(Z), atol=1e-3)

    # texts crowd around e0; the query is e1. Image 1 (the hub) has the higher cosine with the
    # query (0.8) but sits near every text; image 2 (0.78) is near the query only.
    e = np.eye(8, dtype=np.float32)
    b.weights["ref"] = (e[0] + 0.05 * rng.normal(size=(50, 8))).astype(np.float16)
    P = np.stack([0.6 * e[0] + 0.8 * e[1], 0.78 * e[1] + 0.6258 * e[2]])
    q = e[1][None]
    ti = TextIndex(tmp_path / "t.sqlite")
    store_projection(ti, "bridge_use", [1, 2], b, P)
    r = ti.values("hub:bridge_use")
    assert r[0] > 0.5 and abs(r[1]) < 0.1 and HUB_PENALTY["bridge:use"] * (r[0] - r[1]) > 0.02
    _, S = ti.score(["q"], methods=("bridge",), query_vectors={"use": q})
    assert S[0, 1] > S[0, 0]  # the hub ranks second
    _, S = ti.score(["q"], methods=("bridge",), query_vectors={"use": q}, readable_scores=True)
    assert S[0, 1] > S[0, 0] and abs(S[0].max() - 1.0) < 1e-6  # readable: cosine 0.8 is a full match
    ti.db.execute("DELETE FROM text_vectors WHERE kind='hub:bridge_use'")
    _, S = TextIndex(ti.db).score(["q"], methods=("bridge",), query_vectors={"use": q})
    assert S[0, 0] > S[0, 1]  # without the hubness: cosine alone
