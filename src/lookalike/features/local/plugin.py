"""Registers the local-feature parts: pipelines ``sift-bow``, ``orb-bow``, ``sift-vlad``, the
``sv`` re-rank step, and index hooks that keep local features for verification beside the catalog.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...index.base import VectorStore
from ...pipeline import PIPELINES, Pipeline
from . import sv  # noqa: F401  (registers the "sv" step)
from .pipes import BowExtractor, BowStore
from .store import LocalFeatureStore
from .vlad import VladExtractor


class LocalPipeline(Pipeline):
    """A pipeline whose extractor learns a vocabulary from the collection before describing it."""

    @property
    def needs_fit(self) -> bool:  # the extractor's vocabulary, not a post-processing step
        return not getattr(self.extractor, "fitted", True)

    def fit(self, raw: np.ndarray) -> None:
        """Nothing to learn from descriptors (the vocabulary is learned from images)."""

    custom_store = True  # bag-of-words rows are searched by an inverted file, not by FAISS

    def make_store(self, dim: int) -> VectorStore:
        ex = self.extractor
        if isinstance(ex, BowExtractor):
            return BowStore(ex.dim, ex.words, ex.he_bits)
        return super().make_store(dim)

    def search(self, store: VectorStore, queries: np.ndarray, k: int,
               contexts: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Bag-of-words pipelines score with an inverted file; when the index hands over another
        (exact) store of the encoded rows, the inverted file is kept in step with it here."""
        if not isinstance(self.extractor, BowExtractor) or isinstance(store, BowStore):
            return super().search(store, queries, k, contexts)
        return super().search(self._mirror(store), queries, k, contexts)

    def _mirror(self, store: VectorStore) -> BowStore:
        ex = self.extractor
        mirror = getattr(self, "_bow_mirror", None)
        if mirror is None or mirror[0] is not store:
            mirror = (store, BowStore(ex.dim, ex.words, ex.he_bits))
            self._bow_mirror = mirror
        bow = mirror[1]
        want, have = set(store.ids().tolist()), set(bow.ids().tolist())
        if have - want:
            bow.remove(np.array(sorted(have - want), np.int64))
        new = np.array(sorted(want - have), np.int64)
        if len(new):
            bow.add(new, store.reconstruct(new))
        return bow


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
    return LocalPipeline(f"{kind}-bow", ex, description=f"{kind.upper()} bag of {words} visual words: "
                         "tf-idf inverted file, Hamming embedding, burstiness, weak geometric consistency")


@PIPELINES.register("sift-bow")
def _sift_bow(words: int = 10000, fit_on: str | None = None, min_side: int | None = 650, **_: Any) -> Pipeline:
    """RootSIFT bag of words: inverted file, tf-idf, Hamming embedding, burstiness, WGC."""
    return _bow("sift", words, fit_on, min_side)


@PIPELINES.register("orb-bow")
def _orb_bow(words: int = 4000, fit_on: str | None = None, min_side: int | None = 650, **_: Any) -> Pipeline:
    """ORB bag of words: inverted file, tf-idf, Hamming embedding, burstiness, WGC."""
    return _bow("orb", words, fit_on, min_side)


class _VladFit(VladExtractor):
    @property
    def fitted(self) -> bool:
        return self.vocab is not None

    def fit_folder(self, folder: Path, n: int = 300) -> None:
        from ...io import is_image_name, load_image

        paths = sorted(p for p in Path(folder).rglob("*") if is_image_name(p.name))
        step = max(1, len(paths) // n)
        self.fit([load_image(p) for p in paths[::step][:n]])


@PIPELINES.register("sift-vlad")
def _sift_vlad(words: int = 64, fit_on: str | None = None, min_side: int | None = 650, **_: Any) -> Pipeline:
    """RootSIFT VLAD (64 words): intra- and power-normalised global vector; cosine."""
    ex = _VladFit(kind="sift", words=words, min_side=min_side)
    _fit_from(ex, fit_on)
    return LocalPipeline("sift-vlad", ex, description=f"RootSIFT VLAD, {words} words, intra + power normalised")


# -- index hooks: local features for the sv step --------------------------------------------------
def _uses_sv(index: Any) -> bool:
    return any(getattr(s, "name", "") == "sv" for s in index.pipeline.steps)


def _on_write(index: Any, db: Any, image_id: int, result: Any) -> None:
    """After an image is stored: extract and keep its local features when the pipeline verifies."""
    if not _uses_sv(index):
        return
    from ...io import ImageError, load_image

    step = next(s for s in index.pipeline.steps if getattr(s, "name", "") == "sv")
    try:
        feats = step.detector.detect(load_image(result.path))
    except ImageError:
        return
    step.feature_store(index.dir).add([image_id], [feats])


def _on_remove(index: Any, db: Any, ids: list[int]) -> None:
    path = Path(index.dir) / "local_features.sqlite"
    if path.exists():
        store = LocalFeatureStore(path)
        store.remove(ids)
        store.close()


def _install_hooks() -> None:
    from ... import api

    if _on_write not in api._WRITE_HOOKS:
        api._WRITE_HOOKS.append(_on_write)
    if _on_remove not in api._REMOVE_HOOKS:
        api._REMOVE_HOOKS.append(_on_remove)


_install_hooks()
