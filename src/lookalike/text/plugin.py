"""Text search inside an index: registers the ``text`` pipeline and the index hooks.

At index time (pipelines with ImageNet logits, or ``text``) every written image gets its file/folder words, metadata, sidecar captions,
captions from the index's captions file (setting ``text_captions``), ImageNet class probabilities
(from the logits the deep extractor returns), OCR text when the setting ``text_ocr`` is "auto"
(gated by ``ocr.likely_has_text``) or "on", and a bridge vector (from the descriptor and, for a
bridge trained with them, the class probabilities) when ``text_bridge.npz`` is in the index
folder. ``Index.search(text=...)`` then runs ``TextIndex.search`` (hybrid score).
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from .. import api
from ..eval import runner as eval_runner
from ..pipeline import GEM_DEEP, PIPELINES, Pipeline
from .bridge import BRIDGE_FILE, class_probs
from .bridges import Bridges, train_bridges
from .evaluate import evaluate_text
from .sources import WEIGHTS, TextEntry, gather_texts, load_captions
from .store import TextIndex

log = logging.getLogger(__name__)
REPLACED_ON_UPDATE = ("filename", "meta", "caption", "ocr")  # user tags survive a re-index


@PIPELINES.register("text")
def _text_pipeline(**_: Any) -> Pipeline:
    """GeM image features (as ``gem``) plus text search: keywords, sentence meaning, zero-shot classes, learned bridge."""
    from ..features.deep import DeepExtractor

    return Pipeline("text", DeepExtractor(**GEM_DEEP), supports_text=True,
                    description="EfficientNet-Lite2 GeM for images; text in any of 16 languages by keyword "
                                "(FTS5, jieba words), meaning (USE multilingual, MiniLM), zero-shot ImageNet "
                                "classes and a learned image→text bridge")


def _captions(index: "api.Index") -> dict[str, list[str]] | None:
    path = index.catalog.get_setting("text_captions")
    if not path:
        return None
    cache = index.__dict__.setdefault("_text_captions", {})
    if path not in cache:
        try:
            cache[path] = load_captions(path)
        except OSError as e:
            log.warning("cannot read captions file %s: %s", path, e)
            cache[path] = {}
    return cache[path]


def _bridge(index: "api.Index") -> Bridges | None:
    f = Path(index.dir) / BRIDGE_FILE
    if not f.exists():
        return None
    cache = index.__dict__.setdefault("_text_bridge", {})
    key = f.stat().st_mtime_ns
    if key not in cache:
        cache.clear()
        cache[key] = Bridges.load(f)
    return cache[key]


def ocr_entries(path: str, mode: str) -> list[TextEntry]:
    """OCR text of one image file as entries ("auto": only if the cheap gate sees text)."""
    if mode not in ("auto", "on"):
        return []
    from ..io import ImageError, load_image
    from .ocr import OCR_SIDE, read_text

    try:
        text = read_text(load_image(path, max_side=OCR_SIDE), gate=mode == "auto")
    except (ImageError, RuntimeError) as e:
        log.warning("OCR failed on %s: %s", path, e)
        return []
    return [TextEntry("ocr", text, WEIGHTS["ocr"])] if text else []


def index_text(index: "api.Index", db: Any, image_id: int, path: str, vector: np.ndarray | None,
               logits: np.ndarray | None) -> None:
    """Gather and store every text source of one indexed image."""
    ti = TextIndex(db)
    entries = gather_texts(path, _captions(index))
    entries += ocr_entries(path, index.catalog.get_setting("text_ocr", "off"))
    ti.add(image_id, entries, replace_sources=REPLACED_ON_UPDATE)
    if logits is not None:
        ti.set_classes([image_id], np.asarray(logits)[None])
    bridge = _bridge(index)
    if bridge is not None and vector is not None and len(vector) == bridge.in_dim:
        probs = None if logits is None else class_probs(logits)
        if probs is not None or not bridge.config.class_inputs:
            bridge.store(ti, [image_id], np.asarray(vector)[None], probs)


def supports_text(index: "api.Index") -> bool:
    """Text search needs the ``text`` pipeline or an extractor that yields ImageNet logits."""
    return bool(getattr(index.pipeline, "supports_text", False)) or hasattr(index.pipeline.extractor,
                                                                             "describe_with_logits")


def _on_write(index: "api.Index", db: Any, image_id: int, result: Any) -> None:
    if not supports_text(index):
        return
    logits = (result.extra or {}).get("logits")
    try:
        index_text(index, db, image_id, result.path, result.vector, logits)
    except sqlite3.DatabaseError:
        raise
    except Exception as e:  # noqa: BLE001 - odd metadata must never stop indexing
        log.warning("text sources of %s skipped: %s", result.path, e)


def _on_remove(index: "api.Index", db: Any, ids: list[int]) -> None:
    TextIndex(db).remove(ids)


def text_index(index: "api.Index") -> TextIndex | None:
    """The index's TextIndex (None for a read-only catalog without text tables)."""
    db = index.catalog.db
    if index.catalog.readonly and db.execute(
            "SELECT 1 FROM sqlite_master WHERE name='text_vectors'").fetchone() is None:
        return None
    return TextIndex.shared(db)


def _search(index: "api.Index", text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    if not supports_text(index):
        raise NotImplementedError(f"text queries are not supported by pipeline {index.spec!r} "
                                  "(use the text or default pipeline)")
    ti = text_index(index)
    if ti is None:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    return ti.search(text, k)


def _stored_class_probs(ti: TextIndex) -> dict[int, np.ndarray]:
    """Each image's (1000,) class probabilities as ``text_classes`` holds them (top classes only)."""
    out: dict[int, np.ndarray] = {}
    for iid, c, p in ti.db.execute("SELECT image_id, class_id, prob FROM text_classes"):
        out.setdefault(int(iid), np.zeros(1000, np.float32))[c] = p
    return out


def _rows(stored: dict[int, np.ndarray], ids) -> np.ndarray:
    none = np.zeros(1000, np.float32)
    return np.stack([stored.get(int(i), none) for i in ids])


def train_bridge(index: "api.Index", sources: tuple[str, ...] = ("caption", "tag", "meta")) -> tuple[Bridges, int]:
    """Train the bridges (``bridges``) on the index's own texts (captions, tags, metadata), raw
    descriptors and class probabilities, save them as ``text_bridge.npz`` and store every image's
    bridge vectors. Returns (bridges, #texts)."""
    ti = TextIndex(index.catalog.db)
    q = ",".join("?" * len(sources))
    rows = ti.db.execute(f"SELECT image_id, text FROM text_entries WHERE source IN ({q})", sources).fetchall()
    vecs = index.catalog.vectors(sorted({r[0] for r in rows}))
    rows = [r for r in rows if r[0] in vecs]
    if len(vecs) < 2:
        raise ValueError("training the bridge needs texts (captions, tags) on at least 2 indexed images")
    order = sorted(vecs)
    pos = {i: j for j, i in enumerate(order)}
    probs = _stored_class_probs(ti)
    bridge = train_bridges(np.stack([vecs[i] for i in order]), [t for _, t in rows],
                           np.array([pos[i] for i, _ in rows]), _rows(probs, order))
    bridge.save(Path(index.dir) / BRIDGE_FILE)
    for ids, raw in index.catalog.iter_vectors():
        bridge.store(ti, ids, raw, _rows(probs, ids))
    return bridge, len(rows)


api._WRITE_HOOKS.append(_on_write)
api._REMOVE_HOOKS.append(_on_remove)
api._TEXT_SEARCH["search"] = _search
eval_runner._TEXT_EVAL["eval"] = evaluate_text
