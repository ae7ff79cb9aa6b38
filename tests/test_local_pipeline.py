"""Local-feature pipelines through the index API: sift-bow, sift-vlad, the sv step, explain."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import skimage.data as skd
from PIL import Image

import lookalike
from lookalike.features.local.explain import explain
from lookalike.features.local.keypoints import make_detector
from lookalike.features.local.pipes import decode_row, encode_row
from lookalike.rerank.sv import SpatialVerification, fuse
from lookalike.store.flat import FlatStore
from lookalike.pipelines import build

from test_local_verify import _cropped_rotated, _rgb  # noqa: E402  (same test folder)

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick")


def _small(img: np.ndarray, side: int = 320) -> np.ndarray:
    s = side / max(img.shape[:2])
    return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("photos")
    for n in NAMES:
        Image.fromarray(_small(_rgb(getattr(skd, n)()))).save(d / f"{n}.png")
    q = d.parent / "query.png"
    Image.fromarray(_cropped_rotated(_small(_rgb(skd.astronaut()), 480))).save(q)
    return d, q


def test_rows_encode_words_and_codes_exactly() -> None:
    w = np.array([0, 19999, 7], np.int64)
    s = np.array([0, 2**64 - 1, 123456789012345], np.uint64)
    g = np.array([[0, -3], [7, 12], [3, 0]], np.int16)
    w2, s2, g2 = decode_row(encode_row(w, s, 5, g))
    np.testing.assert_array_equal(w2, w)
    np.testing.assert_array_equal(s2, s)
    np.testing.assert_array_equal(g2, g)


def test_fuse_rewards_only_verified_candidates() -> None:
    out = fuse(np.array([0.5, 0.4, 0.3]), np.array([3, 40, 80]), min_inliers=8, weight=1.0, cap=40)
    np.testing.assert_allclose(out, [0.5, 1.4, 1.3])


def test_sift_bow_index_learns_vocabulary_and_finds_the_copy(photos, tmp_path) -> None:
    d, q = photos
    idx = lookalike.open(tmp_path / "idx", pipeline="sift-bow", words=300, min_side=None)
    rep = idx.add([d])
    assert rep.added == len(NAMES) and not rep.failed
    assert (tmp_path / "idx" / "state" / "extractor" / "vocabulary.npz").exists()
    hits = idx.search(q, k=3).hits
    assert hits[0].path.endswith("astronaut.png") and hits[0].score > hits[1].score
    # a filter keeps the inverted file's ranking of the images that pass (astronaut is 320 high)
    every = [h for h in idx.search(q, k=len(NAMES)).hits if h.height <= 300]
    kept = idx.search(q, k=len(NAMES), filters={"max_height": 300}).hits
    assert [h.id for h in kept] == [h.id for h in every] and "astronaut" not in str([h.path for h in kept])
    assert idx.remove([d / "astronaut.png"]) == 1
    idx.close()
    idx = lookalike.open(tmp_path / "idx")  # reopened: vocabulary and inverted file from disk
    hits = idx.search(d / "coffee.png", k=10).hits
    assert hits[0].path.endswith("coffee.png") and len(hits) == len(NAMES) - 1
    idx.close()


def test_sift_vlad_index_finds_itself(photos, tmp_path) -> None:
    d, _ = photos
    idx = lookalike.open(tmp_path / "idx", pipeline="sift-vlad", words=8, min_side=None)
    idx.add([d])
    hits = idx.search(d / "rocket.png", k=2).hits
    assert hits[0].path.endswith("rocket.png") and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert idx.info()["dim"] == 8 * 128
    idx.close()


def test_color_plus_sv_stores_local_features_and_puts_the_copy_first(photos, tmp_path) -> None:
    d, q = photos
    plain = lookalike.open(tmp_path / "plain", pipeline="color")
    plain.add([d])
    before = [h.path for h in plain.search(q, k=len(NAMES)).hits]
    plain.close()
    idx = lookalike.open(tmp_path / "sv", pipeline="color+sv")
    idx.add([d])
    from lookalike.features.local.store import LocalFeatureStore

    st = LocalFeatureStore(idx.catalog.db, readonly=True)  # kept in the catalog, by the writer
    assert len(st) == len(NAMES) and not (tmp_path / "sv" / "local_features.sqlite").exists()
    hits = idx.search(q, k=len(NAMES)).hits
    assert hits[0].path.endswith("astronaut.png")
    assert not before[0].endswith("astronaut.png") or hits[0].score > 1.0  # verified bonus given
    idx.remove([d / "coffee.png"])
    assert len(st) == len(NAMES) - 1
    idx.close()


def test_sv_step_reranks_a_shortlist_in_memory() -> None:
    det = make_detector("sift", max_kpts=800, min_side=None)
    db = [det.detect(_rgb(getattr(skd, n)())) for n in NAMES]
    q = det.detect(_cropped_rotated(_rgb(skd.astronaut())))
    pipe = build("color+sv")
    step = pipe.steps[0]
    assert isinstance(step, SpatialVerification)
    step.features = dict(enumerate(db))
    vecs = np.eye(len(NAMES), dtype=np.float32)
    store = FlatStore(len(NAMES))
    store.add(np.arange(len(NAMES)), vecs)
    query = vecs[[5]] * 0.9 + vecs[[0]] * 0.1  # the first stage ranks the astronaut second
    ctx = SimpleNamespace(query_features=q)
    s, i = pipe.search(store, query, 3, [ctx])
    assert i[0, 0] == 0 and s[0, 0] > s[0, 1]
    assert list(store.search(query, 2)[1][0]) == [5, 0]


def test_explain_writes_a_drawing(photos, tmp_path) -> None:
    d, q = photos
    out = tmp_path / "e" / "x.png"
    n = explain(q, d / "astronaut.png", out)
    img = np.asarray(Image.open(out))
    assert n >= 20 and img.ndim == 3 and img.shape[1] > 320


def test_explain_command_names_the_result_by_id(photos, tmp_path) -> None:
    from typer.testing import CliRunner

    from lookalike.cli import app

    d, q = photos
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add([d])
    rid = idx.catalog.by_path(str(d / "astronaut.png")).id
    idx.close()
    out = tmp_path / "x.png"
    res = CliRunner().invoke(app, ["explain", str(q), str(rid), "--index", str(tmp_path / "idx"),
                                   "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert '"inliers"' in res.output and out.exists()
    bad = CliRunner().invoke(app, ["explain", str(q), "999", "--index", str(tmp_path / "idx")])
    assert bad.exit_code != 0 and "no indexed image" in bad.output


def test_eval_runs_spatial_verification_on_the_dataset_images(photos, tmp_path) -> None:
    """``lookalike eval -p color+sv``: the step reads the database images through the evaluator."""
    import json

    from lookalike.eval.runner import evaluate

    d, q = photos
    db = [{"id": n, "file": f"{n}.png"} for n in NAMES]
    (tmp_path / "gt.json").write_text(json.dumps({
        "format": "lookalike-benchmark/1", "name": "sv-tiny", "task": "image", "db_dir": str(d), "db": db,
        "queries": [{"image": str(q), "relevant": ["astronaut"], "junk": []}]}))
    res = evaluate(tmp_path, "color+sv")
    assert res["queries"] == 1 and res["R@1"] == 1.0 and res["mAP"] == 1.0
