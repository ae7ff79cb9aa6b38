"""Each aggregation on a small synthetic feature map whose pooled value is known by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.features.aggregators import AGGREGATORS, PoolContext
from lookalike.features.aggregators.rmac import rmac_regions
from lookalike.features.aggregators.scda import scda_mask


def fm(*channels) -> np.ndarray:
    """(1, C, H, W) float32 map from per-channel 2-D lists."""
    return np.asarray(channels, np.float32)[None]


def test_all_registered():
    assert set(AGGREGATORS.names()) >= {"fc", "spoc", "mac", "rmac", "gem", "crow", "scda", "pwa", "cam"}


def test_gem_between_mean_and_max():
    x = fm([[1, 3], [0, 0]])
    gem = AGGREGATORS.get("gem")
    assert gem(x, p=1.0)[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert gem(x, p=3.0)[0, 0] == pytest.approx((27 / 4 + 1 / 4) ** (1 / 3), rel=1e-5)


def test_fc_logits_and_pool():
    x = fm([[1, 3], [0, 0]], [[2, 2], [2, 2]])
    logits = np.arange(1000, dtype=np.float32)[None]
    fc = AGGREGATORS.get("fc")
    np.testing.assert_array_equal(fc(x, PoolContext(logits=logits)), logits)
    np.testing.assert_allclose(fc(x, None, source="pool"), [[1.0, 2.0]])
    with pytest.raises(ValueError):
        fc(x, PoolContext())


def test_spoc_sum_and_centre_prior():
    spoc = AGGREGATORS.get("spoc")
    x = fm([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert spoc(x)[0, 0] == pytest.approx(45.0)
    centre = fm([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    corner = fm([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    # sigma = (3 / 2) / 3 = 0.5; the corner is at squared distance 2 from the centre
    assert spoc(centre, prior=True)[0, 0] == pytest.approx(1.0)
    assert spoc(corner, prior=True)[0, 0] == pytest.approx(math.exp(-2 / (2 * 0.25)), rel=1e-5)


def test_mac():
    x = fm([[1, 7], [3, 0]], [[0, 0], [0, 2]])
    np.testing.assert_allclose(AGGREGATORS.get("mac")(x), [[7, 2]])


def test_rmac_regions_on_square_map():
    regs = rmac_regions(8, 8, levels=3)
    assert regs[0] == (0, 0, 8, 8)
    assert sorted(regs[1:5]) == [(0, 0, 5, 5), (0, 3, 5, 5), (3, 0, 5, 5), (3, 3, 5, 5)]
    assert sorted(r[:2] for r in regs[5:]) == [(y, x) for y in (0, 2, 4) for x in (0, 2, 4)]
    assert all(r[2:] == (4, 4) for r in regs[5:])


def test_rmac_regions_on_wide_map_cover_it():
    regs = rmac_regions(9, 12, levels=3)
    covered = np.zeros((9, 12), bool)
    for y, x, h, w in regs:
        assert y + h <= 9 and x + w <= 12
        covered[y:y + h, x:x + w] = True
    assert covered.all() and len(regs) == 2 + 6 + 12


def test_rmac_sums_normalised_region_maxima():
    hot = np.zeros((8, 8), np.float32)
    hot[0, 0] = 1.0
    out = AGGREGATORS.get("rmac")(fm(hot, np.ones((8, 8))))
    # 3 of the 14 regions contain (0, 0): each gives (1, 1)/sqrt2; the other 11 give (0, 1)
    np.testing.assert_allclose(out, [[3 / math.sqrt(2), 3 / math.sqrt(2) + 11]], rtol=1e-5)


def test_crow_by_hand():
    x = fm([[1, 0], [0, 0]], [[1, 1], [1, 1]])
    s = np.array([[2, 1], [1, 1]]) / math.sqrt(7)  # channel sum / its L2 norm
    w = np.sqrt(s)
    idf = [math.log(1.25 / 0.25), math.log(1.25 / 1.0)]  # non-zero fractions 1/4 and 1
    expected = [w[0, 0] * idf[0], w.sum() * idf[1]]
    np.testing.assert_allclose(AGGREGATORS.get("crow")(x), [expected], rtol=1e-5)


def test_scda_keeps_largest_component():
    c0 = np.zeros((5, 5), np.float32)
    c0[0, 0] = c0[0, 1] = 4.0  # a 2-cell blob
    c0[4, 4] = 10.0  # a stronger but smaller blob
    x = fm(c0, np.ones((5, 5)))
    mask = scda_mask(x[0])
    assert mask.sum() == 2 and mask[0, 0] and mask[0, 1]
    np.testing.assert_allclose(AGGREGATORS.get("scda")(x), [[4, 1, 4, 1]])


def test_pwa_part_weighting():
    x = fm([[3, 0], [0, 4]], [[1, 1], [1, 1]])
    w = np.sqrt(np.array([[3, 0], [0, 4]]) / 5.0)  # channel 0 / its L2 norm, square-rooted
    v = np.array([3 * w[0, 0] + 4 * w[1, 1], w.sum()])
    out = AGGREGATORS.get("pwa")(x, channels=[0])
    np.testing.assert_allclose(out, [v / np.linalg.norm(v)], rtol=1e-5)
    assert AGGREGATORS.get("pwa")(x, channels=[0, 1]).shape == (1, 4)


def test_cam_weights_by_class_maps():
    x = fm([[1, 1], [1, 1]], [[2, 0], [0, 1]])
    weight = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)  # class c looks at channel c
    cam = AGGREGATORS.get("cam")
    # top class 1 -> CAM = channel 1 / 2 = [[1, 0], [0, .5]] -> pooled (1.5, 2.5)
    ctx = PoolContext(logits=np.array([[0.5, 1.0, 0.0]]), fc_weight=weight)
    v1 = np.array([1.5, 2.5])
    np.testing.assert_allclose(cam(x, ctx, top=1), [v1 / np.linalg.norm(v1)], rtol=1e-5)
    # adding class 0 (CAM = ones -> pooled (4, 3)) sums the two normalised vectors
    v0 = np.array([4.0, 3.0])
    np.testing.assert_allclose(cam(x, ctx, top=2), [v1 / np.linalg.norm(v1) + v0 / 5.0], rtol=1e-5)
    with pytest.raises(ValueError):
        cam(x, PoolContext(logits=ctx.logits))


@pytest.mark.parametrize("name", ["fc", "spoc", "mac", "rmac", "gem", "crow", "scda", "pwa", "cam"])
def test_batch_shape_and_dtype(name):
    rng = np.random.default_rng(0)
    x = rng.random((3, 40, 5, 6), dtype=np.float32)
    ctx = PoolContext(logits=rng.random((3, 1000)).astype(np.float32),
                      fc_weight=rng.standard_normal((1000, 40)).astype(np.float32))
    params = {"channels": [0, 1]} if name == "pwa" else {}
    out = AGGREGATORS.get(name)(x, ctx, **params)
    assert out.dtype == np.float32 and out.shape[0] == 3 and np.isfinite(out).all()
    one = AGGREGATORS.get(name)(x[1:2], PoolContext(logits=ctx.logits[1:2], fc_weight=ctx.fc_weight), **params)
    np.testing.assert_allclose(out[1:2], one, rtol=1e-5, atol=1e-6)
