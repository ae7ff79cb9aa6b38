"""Query expansion: a match that only surfaces after expansion, and the adaptive floor."""
import numpy as np

from lookalike.store.flat import FlatStore
from lookalike.rerank import load

RERANKERS = load()


def _unit(*rows):
    v = np.array(rows, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _store():
    # 0: close to the query; 1: the true match, near 0 but far from q; 2: a distractor
    db = _unit([1, 0.6, 0], [0.5, 1, 0], [0.6, 0, 1])
    store = FlatStore(3)
    store.add(np.array([10, 11, 12]), db)
    return store


def test_expansion_brings_up_the_match():
    store, q = _store(), _unit([1, 0, 0])
    s, i = store.search(q, 3)
    assert i[0].tolist() == [10, 12, 11]
    step = RERANKERS.get("aqe")(n=1, alpha=3.0, min_sim=0.8)
    s2, i2 = step.rerank(q, s, i, store)
    assert i2[0].tolist() == [10, 11, 12]
    assert np.all(np.diff(s2[0]) <= 0)


def test_classic_aqe_is_the_plain_mean():
    store, q = _store(), _unit([1, 0, 0])
    s, i = store.search(q, 3)
    step = RERANKERS.get("aqe")(n=2, alpha=0.0, min_sim=-1.0)
    expected = q[0] + store.reconstruct(np.array([10, 12])).sum(axis=0)
    np.testing.assert_allclose(step.expand(q, s, i, store)[0],
                               expected / np.linalg.norm(expected), atol=1e-6)


def test_floor_keeps_a_query_without_close_neighbours():
    store, q = _store(), _unit([1, 0, 0])
    s, i = store.search(q, 3)
    step = RERANKERS.get("aqe")(n=3, alpha=3.0, min_sim=0.9)  # nothing passes 0.9
    s2, i2 = step.rerank(q, s, i, store)
    assert i2.tolist() == i.tolist()
    np.testing.assert_allclose(s2, s, atol=1e-6)
