"""The steps as pipeline spec strings: build, fit, index, search, save and reload."""
import numpy as np
import pytest

from lookalike.pipeline import build


def _clusters(seed=0, n_per=8, groups=6, d=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, d))
    v = np.repeat(centres, n_per, axis=0) + 0.35 * rng.normal(size=(groups * n_per, d))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return np.arange(len(v), dtype=np.int64), v, np.repeat(np.arange(groups), n_per)


@pytest.mark.parametrize("spec", ["default+aqe", "default+dba+aqe", "default+krnn",
                                  "default+diffusion"])
def test_spec_searches_and_reloads(spec, tmp_path):
    ids, v, label = _clusters()
    pipe = build(spec)
    assert [s.name for s in pipe.steps] == spec.split("+")[1:]
    db = pipe.fit_steps(ids, v)
    assert pipe.transforms_database == ("dba" in spec)
    store = pipe.make_store(v.shape[1])
    store.add(ids, db)
    s, i = pipe.search(store, v[:3], 10)
    assert i.shape == (3, 10) and (i >= 0).all()
    assert np.all(np.diff(s, axis=1) <= 1e-6)
    for r in range(3):  # the clusters are clear: the top results share the query's group
        assert (label[i[r, :5]] == label[r]).all()
    pipe.save_state(tmp_path)
    again = build(spec)
    again.load_state(tmp_path)
    s2, i2 = again.search(store, v[:3], 10)
    assert i2.tolist() == i.tolist()


def test_graph_steps_catch_up_with_the_store():
    """Images added to the store without update(): the next query refreshes the graph."""
    ids, v, label = _clusters()
    pipe = build("default+krnn")
    store = pipe.make_store(v.shape[1])
    store.add(ids[:24], v[:24])
    pipe.fit_steps(ids[:24], v[:24])
    store.add(ids[24:], v[24:])
    s, i = pipe.search(store, v[40:41], 5)
    assert len(pipe.steps[0].graph) == len(ids)
    assert (label[i[0]] == label[40]).all()
