"""``default``: R-MAC + GeM at two scales with the whitening that ships with lookalike."""
from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import synthetic_photo
from lookalike.api import Index
from lookalike.engine.migrations import SCHEMA_VERSION
from lookalike.features.deep import DeepExtractor
from lookalike.pipelines.deep import SHIPPED_WHITENING
from lookalike.pipelines import build
from lookalike.postprocess import PartsWhitening


def test_default_is_whitened_without_fitting():
    pipe = build("default")
    assert not pipe.needs_fit  # usable from the first image
    (white,) = pipe.post
    assert isinstance(white, PartsWhitening) and white.parts == [1280, 1280]
    assert [w.proj.shape for w in white.whitenings] == [(1280, 1024), (1280, 1024)]
    assert all(w.proj.dtype == np.float32 for w in white.whitenings)
    ex = pipe.extractor.config()
    assert (ex["first"]["aggregator"], ex["second"]["aggregator"]) == ("rmac", "gem")
    assert ex["first"]["scales"] == pytest.approx([1.0, 1.4142])
    # the output is the shipped whitening applied part by part
    raw = np.random.default_rng(0).normal(size=(3, 2560)).astype(np.float32)
    stored = PartsWhitening([1280, 1280]).load(SHIPPED_WHITENING)
    out = pipe.prepare(raw)
    assert out.shape == (3, 2048)
    np.testing.assert_allclose(out, stored.apply(raw), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_fit_on_learns_the_whitening_instead():
    pipe = build("default", fit_on="somewhere")
    assert pipe.needs_fit


def test_default_descriptor_and_logits_come_from_shared_passes():
    """One set of backbone passes gives both parts and the ImageNet logits (for text search)."""
    imgs = [synthetic_photo(3), synthetic_photo(4, (120, 160))]
    pipe = build("default", max_side=128)
    raw, logits = pipe.extractor.describe_with_logits(imgs)
    rmac = DeepExtractor(aggregator="rmac", max_side=128, scales=(1.0, 1.4142))
    gem = DeepExtractor(aggregator="gem", max_side=128, scales=(1.0, 1.4142))
    expect = np.hstack([rmac.describe(imgs), gem.describe(imgs)]) / np.sqrt(2)
    np.testing.assert_allclose(raw, expect, atol=1e-5)
    np.testing.assert_allclose(logits, gem.describe_with_logits(imgs)[1], atol=1e-4)


def test_default_index_searches_reopens_and_keeps_its_whitening(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "idx")
    assert idx.add([photo_dir]).added == 8
    assert (idx.folder.state / "post0" / PartsWhitening.FILE).exists()  # the index keeps its own copy
    res = idx.search(photo_dir / "img5.jpg", k=3)
    assert res.hits[0].path.endswith("img5.jpg") and res.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert idx.info()["dim"] == 2048
    idx.close()
    again = lookalike.open(tmp_path / "idx")
    assert again.spec == "default"
    assert [h.path for h in again.search(photo_dir / "img5.jpg", k=3).hits] == [h.path for h in res.hits]
    again.close()


def as_written_by_0_2(catalog, spec: str) -> None:
    """Rewrite a catalog's settings as lookalike 0.1 / 0.2 kept them (index schema 1)."""
    doc = catalog.get_setting("document")
    with catalog.tx() as db:
        for key in ("document", "schema_version"):
            db.execute("DELETE FROM settings WHERE key=?", (key,))
        catalog.set_setting("pipeline", {"spec": spec, "options": doc["base"]["options"]}, db)
        catalog.set_setting("extractor", doc["extractor"], db)
        catalog.set_setting("store", doc["store"], db)


@pytest.mark.parametrize("spec", ["default", "default+aqe"])
def test_index_built_when_default_was_gem_opens_as_gem(spec, photo_dir, tmp_path):
    """An index from version 0.1 (``default`` = single-scale GeM) keeps working, as ``gem``."""
    old = Index(tmp_path / "idx", spec.replace("default", "gem"))
    old.add([photo_dir])
    as_written_by_0_2(old.catalog, spec)  # what 0.1 wrote
    want = [h.path for h in old.search(photo_dir / "img2.jpg", k=4).hits]
    old.close()
    idx = Index(tmp_path / "idx")
    assert idx.spec == spec.replace("default", "gem")
    assert [h.path for h in idx.search(photo_dir / "img2.jpg", k=4).hits] == want
    doc = idx.catalog.get_setting("document")  # migrated, and recorded under its new name
    assert doc["base"]["name"] == "gem" and idx.catalog.get_setting("schema_version") == SCHEMA_VERSION
    idx.close()


def test_other_extractor_under_default_is_still_refused(photo_dir, tmp_path):
    """The rename applies only to an index whose extractor is the old default's."""
    from lookalike.errors import ConflictError as IndexError_

    old = Index(tmp_path / "idx", "crow")
    old.add([photo_dir])
    as_written_by_0_2(old.catalog, "default")
    old.close()
    with pytest.raises(IndexError_, match="rebuild the index"):
        Index(tmp_path / "idx")
