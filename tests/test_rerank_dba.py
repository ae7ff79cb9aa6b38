"""DBA and the shared kNN graph: known augmented vectors, incremental update == refit, save/load."""
import numpy as np

from lookalike.store.flat import FlatStore
from lookalike.rerank import load

RERANKERS = load()
from lookalike.rerank.knn import KnnGraph


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _data(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return np.arange(100, 100 + n, dtype=np.int64), _unit(rng.normal(size=(n, d)))


def test_knn_graph_rows_start_with_self_and_are_exact():
    ids, v = _data()
    g = KnnGraph(5)
    g.fit(ids, v)
    assert (g.nbr[:, 0] == np.arange(len(ids))).all()
    brute = np.argsort(-(v @ v.T), axis=1)[:, :5]
    assert (g.nbr == brute).all()
    assert g.positions(np.array([105, 7])).tolist() == [5, -1]


def test_knn_graph_update_matches_refit():
    ids, v = _data()
    g = KnnGraph(5)
    g.fit(ids[:50], v[:50])
    changed = g.update(ids[50:], v[50:], np.array([100, 120, 133]))
    ref = KnnGraph(5)
    keep = ~np.isin(ids, [100, 120, 133])
    ref.fit(ids[keep], v[keep])
    assert sorted(g.ids.tolist()) == sorted(ref.ids.tolist())
    for x in ref.ids:
        got = g.ids[g.nbr[g.positions(np.array([x]))[0]]]
        want = ref.ids[ref.nbr[ref.positions(np.array([x]))[0]]]
        assert got.tolist() == want.tolist()
    assert set(ids[50:].tolist()) <= set(changed.tolist())
    assert len(changed) < len(g)  # only affected rows were recomputed


def test_dba_weighted_mean_of_passing_neighbours():
    v = _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1]])
    step = RERANKERS.get("dba")(n=3, alpha=3.0, min_sim=0.5)
    ids = np.array([1, 2, 3])
    step.fit(ids, v)
    out = step.transform_database(ids, v)
    s01 = float(v[0] @ v[1])
    want0 = _unit(v[0] + s01 ** 3 * v[1])  # vector 3 is below the floor
    np.testing.assert_allclose(out[0], want0, atol=1e-6)
    np.testing.assert_allclose(out[2], v[2], atol=1e-6)  # an isolated vector stays put


def test_dba_lifts_a_match_through_its_neighbour():
    # db 1 and 2 show the query's object (2 is a good view, 1 a poor one); db 3 is a distractor
    v = _unit([[0.7071, 0.7071, 0], [0.85, 0.5, 0.1], [0.75, 0, 0.66]])
    q = _unit([[1, 0, 0]])
    ids = np.array([1, 2, 3])
    step = RERANKERS.get("dba")(n=3, alpha=3.0, min_sim=0.8)
    step.fit(ids, v)
    plain, aug = FlatStore(3), FlatStore(3)
    plain.add(ids, v)
    aug.add(ids, step.transform_database(ids, v))
    assert plain.search(q, 3)[1][0].tolist() == [2, 3, 1]
    assert aug.search(q, 3)[1][0].tolist() == [2, 1, 3]
    assert step.rerank(q, *plain.search(q, 3), plain)[1][0].tolist() == [2, 3, 1]  # query side: identity


def test_dba_update_and_save_load(tmp_path):
    ids, v = _data()
    step = RERANKERS.get("dba")(n=4, alpha=3.0, min_sim=0.0)
    step.fit(ids[:50], v[:50])
    changed = step.update(ids[50:], v[50:], np.array([101]))
    ref = RERANKERS.get("dba")(n=4, alpha=3.0, min_sim=0.0)
    keep = ids != 101
    ref.fit(ids[keep], v[keep])
    np.testing.assert_allclose(step.transform_database(ids[keep], v[keep]),
                               ref.transform_database(ids[keep], v[keep]), atol=1e-5)
    assert 101 not in changed.tolist() and set(ids[50:].tolist()) <= set(changed.tolist())
    step.save(tmp_path)
    again = RERANKERS.get("dba")(n=4, alpha=3.0, min_sim=0.0)
    again.load(tmp_path)
    np.testing.assert_allclose(again.transform_database(ids[keep], v[keep]),
                               ref.transform_database(ids[keep], v[keep]), atol=1e-5)
