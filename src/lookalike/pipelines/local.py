"""The local-feature pipelines ``sift-bow``, ``orb-bow``, ``sift-vlad``, and the extension that
keeps each image's local features in the index for the ``sv`` step (spatial verification)."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, Sequence

from lookalike.features.local.keypoints import Detector, LocalFeatures
from lookalike.features.local.pipes import BowExtractor
from lookalike.features.local.store import LocalFeatureStore
from lookalike.features.local.vlad import VladExtractor
from lookalike.pipelines.extension import Extension, WriteContext
from lookalike.pipelines.pipeline import Pipeline
from lookalike.store.bow import BowStore


def _fit_from(ex: Any, fit_on: str | None) -> None:
    """``--fit-on DATASET`` (or an image folder): learn the vocabulary there (cached)."""
    if fit_on:
        root = Path(fit_on)
        gt = root / "gt.json"
        if gt.exists():
            import json

            root = root / json.loads(gt.read_text()).get("db_dir", "images")
        ex.fit_folder(root)


def _bow(kind: str, words: int, fit_on: str | None, min_side: int | None) -> Pipeline:
    ex = BowExtractor(kind=kind, words=words, min_side=min_side)
    _fit_from(ex, fit_on)
    return Pipeline(f"{kind}-bow", ex, store_factory=lambda dim: BowStore(ex.dim, ex.words, ex.he_bits),
                    description=f"{kind.upper()} bag of {words} visual words: "
                         "tf-idf inverted file, Hamming embedding, burstiness, weak geometric consistency")


def _sift_bow(words: int = 10000, fit_on: str | None = None, min_side: int | None = 650, **_: Any) -> Pipeline:
    """RootSIFT bag of words: inverted file, tf-idf, Hamming embedding, burstiness, WGC."""
    return _bow("sift", words, fit_on, min_side)


def _orb_bow(words: int = 4000, fit_on: str | None = None, min_side: int | None = 650, **_: Any) -> Pipeline:
    """ORB bag of words: inverted file, tf-idf, Hamming embedding, burstiness, WGC."""
    return _bow("orb", words, fit_on, min_side)


class _VladFit(VladExtractor):
    @property
    def fitted(self) -> bool:
        return self.vocab is not None

    def fit_folder(self, folder: Path, n: int = 300) -> None:
        from lookalike.io import is_image_name, load_image

        paths = sorted(p for p in Path(folder).rglob("*") if is_image_name(p.name))
        step = max(1, len(paths) // n)
        self.fit([load_image(p) for p in paths[::step][:n]])


def _sift_vlad(words: int = 64, fit_on: str | None = None, min_side: int | None = 650, **_: Any) -> Pipeline:
    """RootSIFT VLAD (64 words): intra- and power-normalised global vector; cosine."""
    ex = _VladFit(kind="sift", words=words, min_side=min_side)
    _fit_from(ex, fit_on)
    return Pipeline("sift-vlad", ex, description=f"RootSIFT VLAD, {words} words, intra + power normalised")


def factories() -> dict[str, Callable[..., Pipeline]]:
    return {"sift-bow": _sift_bow, "orb-bow": _orb_bow, "sift-vlad": _sift_vlad}


class LocalFeaturesExtension(Extension):
    """Each indexed image's local features (the ``sv`` step's detector), in the catalog's
    ``local_features`` table, so verification reads them instead of decoding candidates."""

    name = "local-features"

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def schema(self, db: sqlite3.Connection) -> None:
        LocalFeatureStore(db)

    def prepare(self, result: Any, ctx: WriteContext) -> LocalFeatures | None:
        if result.same_as is not None:
            return None  # copied from the image with the same content
        from lookalike.io import ImageError, load_image

        try:
            return self.detector.detect(load_image(result.path))
        except ImageError:
            return None

    def write(self, db: sqlite3.Connection, image_id: int, result: Any, prepared: Any,
              ctx: WriteContext) -> None:
        store = LocalFeatureStore(db)
        if prepared is None and result.same_as is not None:
            prepared = store.get_many([result.same_as])[0]
        if prepared is not None:
            store.add([image_id], [prepared])
        else:
            store.remove([image_id])

    def remove(self, db: sqlite3.Connection, ids: list[int]) -> None:
        LocalFeatureStore(db).remove(ids)

    @staticmethod
    def lookup(db: sqlite3.Connection) -> Callable[[Sequence[int]], list[LocalFeatures | None]] | None:
        """A reader of the stored features (None where the table does not exist)."""
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='local_features'").fetchone() is None:
            return None
        store = LocalFeatureStore(db, readonly=True)
        return store.get_many
