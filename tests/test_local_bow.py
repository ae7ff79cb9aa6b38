"""Visual vocabulary, bag of words with Hamming embedding, and VLAD on small synthetic data."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data as skd

from lookalike.features.local.bow import BowIndex, BowParams
from lookalike.features.local.keypoints import LocalFeatures, make_detector
from lookalike.features.local.vlad import VladExtractor, vlad
from lookalike.features.local.vocab import Vocabulary

from test_local_verify import _cropped_rotated, _rgb  # noqa: E402  (same test folder)

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "immunohistochemistry")


@pytest.fixture(scope="module")
def data() -> tuple[list[LocalFeatures], LocalFeatures, Vocabulary]:
    det = make_detector("sift", max_kpts=400, min_side=None, max_side=384)
    db = [det.detect(_rgb(getattr(skd, n)())) for n in NAMES]
    query = det.detect(_cropped_rotated(_rgb(skd.astronaut())))
    train = [det.detect(_rgb(getattr(skd, n)())) for n in ("gravel", "coins", "text")]
    voc = Vocabulary.fit(np.concatenate([f.float_desc() for f in train + db]), 256, niter=10, he_bits=64)
    return db, query, voc


def test_vocabulary_assigns_centroids_to_themselves_and_codes_are_stable(data) -> None:
    _, _, voc = data
    w, d = voc.assign(voc.centroids[:20], ma=2)
    np.testing.assert_array_equal(w[:, 0], np.arange(20))
    assert np.all(d[:, 0] < 1e-6) and np.all(d[:, 1] > 0)
    x = voc.centroids[:5] + 0.01
    s1 = voc.signatures(x, w[:5, 0])
    assert s1.dtype == np.uint64 and np.all(s1 == voc.signatures(x.copy(), w[:5, 0]))
    assert len(set(s1.tolist())) > 1


@pytest.mark.parametrize("params", [BowParams(), BowParams(ma=1, he_threshold=64, burst=False), BowParams(wgc=True)])
def test_bow_ranks_the_source_of_a_cropped_rotated_copy_first(data, params) -> None:
    db, query, voc = data
    idx = BowIndex(voc, params)
    idx.add(range(10, 10 + len(db)), db)
    scores, ids = idx.search([query], k=3)
    assert ids[0, 0] == 10 and scores[0, 0] > scores[0, 1]


def test_bow_he_separates_better_than_plain_words(data) -> None:
    db, query, voc = data
    margin = {}
    for he in (True, False):
        idx = BowIndex(voc, BowParams(ma=1, he_threshold=24 if he else 64, he_sigma=16 if he else 0))
        idx.add(range(len(db)), db)
        s = idx.scores(query)[1]
        margin[he] = s[0] / np.sort(s)[-2]
    assert margin[True] > margin[False] > 1


def test_bow_remove_save_load(tmp_path, data) -> None:
    db, query, voc = data
    idx = BowIndex(voc)
    idx.add([5, 6, 7], db[:3])
    with pytest.raises(ValueError):
        idx.add([5], db[:1])
    assert idx.remove([5, 99]) == 1 and list(idx.ids()) == [6, 7]
    idx.save(tmp_path)
    back = BowIndex.load(tmp_path)
    assert list(back.ids()) == [6, 7] and back.params == idx.params
    np.testing.assert_allclose(back.scores(query)[1], idx.scores(query)[1], rtol=1e-6)
    empty = BowIndex(voc)
    s, i = empty.search([query], k=2)
    assert np.all(i == -1) and np.all(np.isneginf(s))


def test_vlad_is_normalised_and_finds_the_copy(data, tmp_path) -> None:
    db, query, _ = data
    ex = VladExtractor(words=16, min_side=None)
    ex.fit(db)
    v = ex.describe_features(db + [query])
    assert v.shape == (len(db) + 1, 16 * 128) and ex.dim == 16 * 128
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert int(np.argmax(v[:-1] @ v[-1])) == 0
    ex.save(tmp_path)
    ex2 = VladExtractor(words=16, min_side=None)
    ex2.load(tmp_path)
    np.testing.assert_allclose(ex2.describe_features([query]), v[-1:], rtol=1e-5)
    assert np.allclose(vlad(np.zeros((0, 128), np.float32), ex.vocab), 0)


def test_wgc_keeps_votes_of_one_rotation_only(data) -> None:
    db, _, voc = data
    idx = BowIndex(voc, BowParams(ma=1, wgc=True))
    idx.add([0, 1, 2], db[:3])  # idf needs more than one image
    q = db[0]
    # the same keypoints with orientations scrambled: consistent votes collapse
    scrambled = LocalFeatures(q.kind, q.kpts.copy(), q.desc, q.image_size)
    scrambled.kpts[:, 3] = np.random.default_rng(0).uniform(0, 360, len(q))
    plain = BowIndex(voc, BowParams(ma=1))
    plain.add([0, 1, 2], db[:3])
    assert plain.scores(scrambled)[1][0] == pytest.approx(plain.scores(q)[1][0], rel=1e-5)
    assert idx.scores(q)[1][0] > 0.1
    assert idx.scores(scrambled)[1][0] < 0.5 * idx.scores(q)[1][0]
