"""k-reciprocal re-ranking: a far view of the query's object beats a tight foreign cluster."""
import numpy as np
import pytest

from lookalike.store.flat import FlatStore
from lookalike.rerank import load

RERANKERS = load()
from lookalike.rerank.krnn import reciprocal_sets


def _sphere(a, b):
    return [np.cos(a) * np.cos(b), np.sin(a) * np.cos(b), np.sin(b)]


def _scene():
    """Ids 0-4: the query's object, views spread 0.15 rad apart along one direction; ids 5-10:
    a tight cluster of another object, 0.5 rad from the query along another direction."""
    a = [_sphere(t, 0) for t in (0, 0.15, 0.3, 0.45, 0.6)]
    b = [_sphere(dx, 0.5 + dz) for dx, dz in
         ((0, 0), (0.04, 0), (-0.04, 0), (0, 0.04), (0, -0.04), (0.03, 0.03))]
    v = np.array(a + b, np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = np.arange(len(v), dtype=np.int64)
    store = FlatStore(3)
    store.add(ids, v)
    return ids, v, store


@pytest.mark.parametrize("k2, lam", [(1, 0.0), (2, 0.3)])
def test_reciprocity_lifts_the_far_view(k2, lam):
    ids, v, store = _scene()
    s, i = store.search(v[:1], len(v))
    assert i[0].tolist()[-1] == 4  # plain similarity puts the far view last
    step = RERANKERS.get("krnn")(k1=4, k2=k2, lam=lam, depth=20)
    step.fit(ids, v)
    s2, i2 = step.rerank(v[:1], s, i, store)
    assert set(i2[0, :5].tolist()) == {0, 1, 2, 3, 4}
    assert np.all(np.diff(s2[0]) <= 0)


def test_reciprocal_sets_are_mutual():
    nbr = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0], [3, 2, 1]])
    r = reciprocal_sets(nbr, 1)  # 0<->1 are mutual first neighbours; 2's first is 1, not mutual
    assert r.tolist() == [[0, 1], [1, 0], [2, -1], [3, -1]]


def test_krnn_update_and_save_load(tmp_path):
    ids, v, store = _scene()
    step = RERANKERS.get("krnn")(k1=4, k2=1, lam=0.0, depth=20)
    step.fit(ids[:7], v[:7])
    step.update(ids[7:], v[7:], np.empty(0, np.int64))
    step.save(tmp_path)
    again = RERANKERS.get("krnn")(k1=4, k2=1, lam=0.0, depth=20)
    again.load(tmp_path)
    s, i = store.search(v[:1], 5)  # a short list is widened to ``depth``, then cut back
    assert 4 not in i[0].tolist()
    s2, i2 = again.rerank(v[:1], s, i, store)
    assert i2.shape == (1, 5) and set(i2[0].tolist()) == {0, 1, 2, 3, 4}
