"""The deep global-descriptor pipelines through the index: registration, whitening stored, fusion."""
from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import synthetic_photo
from lookalike.features.deep import DeepExtractor
from lookalike.pipeline import PIPELINES, build
from lookalike.postprocess import Fusion

NAMES = ["fc", "spoc", "mac", "rmac", "gem", "crow", "scda", "pwa", "cam", "fusion-gem-crow"]


def test_names_registered():
    build("gem")  # loads the plugins
    for n in NAMES:
        assert n in PIPELINES and f"{n}-pcaw" in PIPELINES


def test_whitened_index_stores_its_whitening(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "idx", pipeline="gem-pcaw")
    assert idx.add([photo_dir]).added == 8
    assert (idx.state_dir / "post0" / "pcaw.npz").exists()
    res = idx.search(photo_dir / "img3.jpg", k=3)
    assert res.hits[0].path.endswith("img3.jpg") and res.hits[0].score == pytest.approx(1.0, abs=1e-4)
    idx.close()
    again = lookalike.open(tmp_path / "idx")  # the learned whitening is loaded, not refitted
    assert not again.pipeline.needs_fit
    res2 = again.search(photo_dir / "img3.jpg", k=3)
    assert [h.path for h in res2.hits] == [h.path for h in res.hits]
    again.close()


def test_fusion_shares_one_backbone_pass():
    imgs = [synthetic_photo(1), synthetic_photo(2)]
    gem, crow = DeepExtractor(aggregator="gem", max_side=128), DeepExtractor(aggregator="crow", max_side=128)
    fused = Fusion(gem, crow).describe(imgs)
    separate = np.hstack([gem.describe(imgs), crow.describe(imgs)]) / np.sqrt(2)
    np.testing.assert_allclose(fused, separate, atol=1e-5)
