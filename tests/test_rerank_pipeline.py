"""The steps as pipeline spec strings: build, fit, index, search, save and reload."""
import numpy as np
import pytest

from lookalike.pipelines import build


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


def test_graph_steps_follow_updates_and_searches_leave_them_alone():
    """The writer's ``update_steps`` keeps the graph current; a search never changes it."""
    ids, v, label = _clusters()
    pipe = build("default+krnn")
    store = pipe.make_store(v.shape[1])
    store.add(ids[:24], v[:24])
    pipe.fit_steps(ids[:24], v[:24])
    drop, add, vecs = pipe.update_steps(ids[24:], v[24:], np.zeros(0, np.int64))
    store.add(add, vecs)
    assert len(pipe.steps[0].graph) == len(ids) and not len(drop)
    before = {k: a.copy() for k, a in pipe.steps[0].state().items()}
    s, i = pipe.search(store, v[40:41], 5)
    assert (label[i[0]] == label[40]).all()
    after = pipe.steps[0].state()
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("steps", ["dba+aqe", "diffusion", "krnn"])
def test_query_time_steps_match_an_index_built_with_them(steps, tmp_path):
    """``search(rerank=...)`` on a plain index ranks as an index built with those steps does."""
    from PIL import Image

    import lookalike
    from conftest import synthetic_photo

    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    for i in range(6):  # six scenes, each with two near-duplicates, so that expansions find partners
        img = synthetic_photo(i)
        for j, copy in enumerate((img, img[4:-4, 6:], np.clip(img * 0.9 + 12, 0, 255).astype(np.uint8))):
            Image.fromarray(copy).save(photo_dir / f"img{i}-{j}.jpg", quality=92)
    plain = lookalike.open(tmp_path / "plain", pipeline="color")
    plain.add([photo_dir])
    built = lookalike.open(tmp_path / "built", pipeline=f"color+{steps}")
    built.add([photo_dir])
    query = photo_dir / "img3-1.jpg"
    want = [(h.path, round(h.score, 5)) for h in built.search(query, k=18).hits]
    got = [(h.path, round(h.score, 5)) for h in plain.search(query, k=18, rerank=steps).hits]
    assert got == want
    assert got != [(h.path, round(h.score, 5)) for h in plain.search(query, k=18).hits]  # the steps ran
    plain.remove([photo_dir / "img5-0.jpg"])  # the query-time state follows the index
    assert all(not h.path.endswith("img5-0.jpg") for h in plain.search(query, k=17, rerank=steps).hits)
    plain.close()
    built.close()
