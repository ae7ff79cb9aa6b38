"""The deep global-descriptor pipelines through the index: registration, whitening stored, fusion."""
from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import synthetic_photo
from lookalike.features.deep import DeepExtractor
from lookalike.features.fusion import Fusion
from lookalike.pipelines import build, pipelines

NAMES = ["fc", "spoc", "mac", "rmac", "gem", "crow", "scda", "pwa", "cam", "fusion-gem-crow",
         "fusion-rmac-gem"]


def test_names_registered():
    build("gem")  # loads the plugins
    for n in NAMES:
        assert n in pipelines() and f"{n}-pcaw" in pipelines()


def test_whitened_index_stores_its_whitening(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "idx", pipeline="gem-pcaw")
    assert idx.add([photo_dir]).added == 8
    assert (idx.folder.state / "post0" / "pcaw.npz").exists()
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


def test_extraction_options_reach_the_extractor_and_are_kept(photo_dir, tmp_path):
    """--max-side / --scales / --flip / --turns / --foreground on `index` build the extractor and are stored."""
    import json

    from typer.testing import CliRunner

    from lookalike.cli import app

    idx = str(tmp_path / "idx")
    r = CliRunner().invoke(app, ["index", str(photo_dir), "--index", idx, "-p", "gem", "--max-side", "160",
                                 "--scales", "1,0.75", "--flip", "--turns", "--foreground", "scda", "--quiet"])
    assert r.exit_code == 0, r.output
    info = json.loads(CliRunner().invoke(app, ["info", "--index", idx, "--json"]).stdout)
    ex = info["extractor"]
    assert (ex["max_side"], ex["scales"], ex["flip"], ex["turns"], ex["foreground"]) == (160, [1.0, 0.75], True, True, "scda")
    direct = DeepExtractor(aggregator="gem", max_side=160, scales=(1.0, 0.75), flip=True, turns=True, foreground="scda")
    with lookalike.open(idx) as index:  # the stored options rebuild the same extractor
        hit = index.search(photo_dir / "img2.jpg", k=1).hits[0]
        assert hit.path.endswith("img2.jpg")
        stored = index.catalog.vectors([hit.id])[hit.id]
    from PIL import Image

    want = direct.describe([np.asarray(Image.open(photo_dir / "img2.jpg").convert("RGB"))])[0]
    np.testing.assert_allclose(stored, want, atol=1e-4)
    bad = CliRunner().invoke(app, ["index", str(photo_dir), "--index", str(tmp_path / "x"), "--scales", "a,b"])
    assert bad.exit_code != 0 and "--scales" in bad.output


def test_rmac_gem_fusion_whitens_each_part_and_is_stored(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "idx", pipeline="fusion-rmac-gem-pcaw", max_side=128)
    ex = idx.pipeline.extractor
    assert (ex.first.aggregator, ex.second.aggregator) == ("rmac", "gem")
    assert ex.first.scales == (1.0, 1.4142) and ex.first.shares_pass(ex.second)
    assert idx.add([photo_dir]).added == 8
    assert (idx.folder.state / "post0" / "pcaw-parts.npz").exists()
    assert idx.search(photo_dir / "img5.jpg", k=1).hits[0].path.endswith("img5.jpg")
    idx.close()


def test_rotated_query_finds_the_upright_image(photo_dir, tmp_path):
    """A photo stored on its side: turning the query finds it at full similarity."""
    from PIL import Image

    with lookalike.open(tmp_path / "idx", pipeline="gem") as idx:
        idx.add([photo_dir])
        upright = np.asarray(Image.open(photo_dir / "img4.jpg").convert("RGB"))
        sideways = np.ascontiguousarray(np.rot90(upright, 1))
        plain = idx.search(sideways, k=8)
        turned = idx.search(sideways, k=8, rotate=True)
        target = [h for h in turned.hits if h.path.endswith("img4.jpg")][0]
        assert turned.hits[0] is target and target.score == pytest.approx(1.0, abs=1e-3)
        before = [h.score for h in plain.hits if h.path.endswith("img4.jpg")][0]
        assert target.score > before + 0.01
        # every result keeps its best score over the views: never below the upright query's
        best = {h.id: h.score for h in turned.hits}
        assert all(best[h.id] >= h.score - 1e-6 for h in plain.hits)
