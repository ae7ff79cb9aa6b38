"""Diffusion recovers the far end of a manifold that plain similarity ranks below distractors."""
import numpy as np

from lookalike.store.flat import FlatStore
from lookalike.rerank import load

RERANKERS = load()


def _manifold():
    """An arc of 11 points (0.15 rad apart) from the query, and a tight 3-point distractor
    cluster at 0.8 rad off the arc's plane."""
    t = np.arange(11) * 0.15
    arc = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], 1)
    a = 0.8
    off = np.array([[np.cos(a), 0.0, np.sin(a)], [np.cos(a), 0.03, np.sin(a)],
                    [np.cos(a), -0.03, np.sin(a)]])
    v = np.vstack([arc, off]).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_diffusion_follows_the_chain():
    v = _manifold()
    ids = np.arange(len(v), dtype=np.int64)
    store = FlatStore(3)
    store.add(ids, v)
    q = v[:1]
    s, i = store.search(q, len(v))
    assert not set(i[0, :11].tolist()) == set(range(11))  # distractors cut into the arc
    step = RERANKERS.get("diffusion")(k=3, kq=2, gamma=3.0, alpha=0.99, iters=50, beta=0.0)
    step.fit(ids, v)
    s2, i2 = step.rerank(q, s, i, store)
    assert set(i2[0, :11].tolist()) == set(range(11))
    assert i[0].tolist().index(10) > i[0].tolist().index(11)  # far end was below a distractor
    assert np.all(np.diff(s2[0]) <= 0)


def test_diffusion_update_and_save_load(tmp_path):
    v = _manifold()
    ids = np.arange(len(v), dtype=np.int64)
    store = FlatStore(3)
    store.add(ids, v)
    params = dict(k=3, kq=2, iters=50, beta=0.0, debias=0)
    step = RERANKERS.get("diffusion")(**params)
    step.fit(ids[:6], v[:6])
    step.update(ids[6:], v[6:], np.empty(0, np.int64))
    step.save(tmp_path)
    again = RERANKERS.get("diffusion")(**params)
    again.load(tmp_path)
    s, i = store.search(v[:1], len(v))
    assert set(again.rerank(v[:1], s, i, store)[1][0, :11].tolist()) == set(range(11))
