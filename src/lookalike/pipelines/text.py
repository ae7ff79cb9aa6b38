"""The ``text`` pipeline, and the extension that keeps every indexed image's text for search.

At index time (pipelines with ImageNet logits, or ``text``) every written image gets its file and
folder words, metadata, sidecar captions, captions from the index's captions file (setting
``text_captions``), ImageNet class probabilities (from the logits the deep extractor returns),
OCR text when the setting ``text_ocr`` is "auto" (gated by ``ocr.likely_has_text``) or "on", and a
bridge vector (from the descriptor and, for a bridge trained with them, the class probabilities)
when ``text_bridge.npz`` is in the index folder. A text query runs ``TextIndex.search``.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lookalike.errors import BadInputError
from lookalike.pipelines.extension import Extension, WriteContext
from lookalike.pipelines.options import GEM_DEEP
from lookalike.pipelines.pipeline import Pipeline
from lookalike.text.bridge import BRIDGE_FILE, class_probs
from lookalike.text.bridges import Bridges, train_bridges
from lookalike.text.sources import WEIGHTS, TextEntry, gather_texts, load_captions
from lookalike.text.store import TextIndex

log = logging.getLogger(__name__)
REPLACED_ON_UPDATE = ("filename", "meta", "caption", "ocr")  # user tags survive a re-index


def text_pipeline(**_: Any) -> Pipeline:
    """GeM image features (as ``gem``) plus text search: keywords, sentence meaning, zero-shot classes, learned bridge."""
    from lookalike.features.deep import DeepExtractor

    return Pipeline("text", DeepExtractor(**GEM_DEEP), supports_text=True,
                    description="EfficientNet-Lite2 GeM for images; text in any of 16 languages by keyword "
                                "(FTS5, jieba words), meaning (USE multilingual, MiniLM), zero-shot ImageNet "
                                "classes and a learned image→text bridge")


def factories() -> dict[str, Callable[..., Pipeline]]:
    return {"text": text_pipeline}


def ocr_entries(path: str, mode: str) -> list[TextEntry]:
    """OCR text of one image file as entries ("auto": only if the cheap gate sees text)."""
    if mode not in ("auto", "on"):
        return []
    from lookalike.io import ImageError, load_image
    from lookalike.text.ocr import OCR_SIDE, read_text

    try:
        text = read_text(load_image(path, max_side=OCR_SIDE), gate=mode == "auto")
    except (ImageError, RuntimeError) as e:
        log.warning("OCR failed on %s: %s", path, e)
        return []
    return [TextEntry("ocr", text, WEIGHTS["ocr"])] if text else []


class TextExtension(Extension):
    """Text rows, class probabilities and bridge vectors of every indexed image."""

    name = "text"
    searches_text = True

    def __init__(self) -> None:
        self._captions: dict[str, dict[str, list[str]]] = {}
        self._bridges: dict[tuple[str, int], Bridges] = {}
        self.encoders: dict[str, Any] = {}  # sentence encoders, loaded once per writer (TextIndex fills it)

    def schema(self, db: sqlite3.Connection) -> None:
        TextIndex.ensure_schema(db)

    def captions(self, ctx: WriteContext) -> dict[str, list[str]] | None:
        path = ctx.setting("text_captions", None)
        if not path:
            return None
        if path not in self._captions:
            try:
                self._captions[path] = load_captions(path)
            except OSError as e:
                log.warning("cannot read captions file %s: %s", path, e)
                self._captions[path] = {}
        return self._captions[path]

    def bridge(self, folder: Path) -> Bridges | None:
        f = Path(folder) / BRIDGE_FILE
        if not f.exists():
            return None
        key = (str(f), f.stat().st_mtime_ns)
        if key not in self._bridges:
            self._bridges.clear()
            self._bridges[key] = Bridges.load(f)
        return self._bridges[key]

    def prepare(self, result: Any, ctx: WriteContext) -> list[TextEntry]:
        try:
            entries = gather_texts(result.path, self.captions(ctx))
            return entries + ocr_entries(result.path, ctx.setting("text_ocr", "off"))
        except Exception as e:  # noqa: BLE001 - odd metadata must never stop indexing
            log.warning("text sources of %s skipped: %s", result.path, e)
            return []

    def write(self, db: sqlite3.Connection, image_id: int, result: Any, prepared: Any,
              ctx: WriteContext) -> None:
        ti = TextIndex(db, encoders=self.encoders)
        ti.add(image_id, prepared or [], replace_sources=REPLACED_ON_UPDATE)
        logits = (result.extra or {}).get("logits")
        if logits is not None:
            ti.set_classes([image_id], np.asarray(logits)[None])
        elif result.same_as is not None:
            ti.copy_classes(result.same_as, image_id)
        bridge = self.bridge(ctx.folder)
        vector = result.vector
        if bridge is not None and vector is not None and len(vector) == bridge.in_dim:
            probs = None if logits is None else class_probs(logits)
            if probs is not None or not bridge.config.class_inputs:
                bridge.store(ti, [image_id], np.asarray(vector)[None], probs)

        ti.embed_missing([image_id])


    def remove(self, db: sqlite3.Connection, ids: list[int]) -> None:
        TextIndex(db).remove(ids)

    @staticmethod
    def reader(db: sqlite3.Connection) -> TextIndex | None:
        """A ``TextIndex`` over ``db`` for searching (None when the index has no text tables)."""
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='text_vectors'").fetchone() is None:
            return None
        return TextIndex(db, readonly=True)


def _stored_class_probs(ti: TextIndex, ids: list[int] | None = None) -> dict[int, np.ndarray]:
    """Each image's (1000,) class probabilities as ``text_classes`` holds them (top classes only)."""
    out: dict[int, np.ndarray] = {}
    rows = ti.db.execute("SELECT image_id, class_id, prob FROM text_classes") if ids is None else \
        ti.db.execute(f"SELECT image_id, class_id, prob FROM text_classes WHERE image_id IN "
                      f"({','.join('?' * len(ids))})", [int(i) for i in ids])
    for iid, c, p in rows:
        out.setdefault(int(iid), np.zeros(1000, np.float32))[c] = p
    return out


def _rows(stored: dict[int, np.ndarray], ids) -> np.ndarray:
    none = np.zeros(1000, np.float32)
    return np.stack([stored.get(int(i), none) for i in ids])


def train_bridge(db: sqlite3.Connection, catalog: Any, folder: Path,
                 sources: tuple[str, ...] = ("caption", "tag", "meta")) -> tuple[Bridges, int]:
    """Train the bridges (``text.bridges``) on the index's own texts (captions, tags, metadata),
    raw descriptors and class probabilities, save them as ``text_bridge.npz`` and store every
    image's bridge vectors (inside the caller's transaction ``db``). Returns (bridges, #texts)."""
    ti = TextIndex(db)
    q = ",".join("?" * len(sources))
    rows = ti.db.execute(f"SELECT image_id, text FROM text_entries WHERE source IN ({q})", sources).fetchall()
    vecs = catalog.vectors(sorted({r[0] for r in rows}))
    rows = [r for r in rows if r[0] in vecs]
    if len(vecs) < 2:
        raise BadInputError("training the bridge needs texts (captions, tags) on at least 2 indexed images")
    order = sorted(vecs)
    pos = {i: j for j, i in enumerate(order)}
    probs = _stored_class_probs(ti)
    bridge = train_bridges(np.stack([vecs[i] for i in order]), [t for _, t in rows],
                           np.array([pos[i] for i, _ in rows]), _rows(probs, order))
    bridge.save(Path(folder) / BRIDGE_FILE)
    for ids, raw in catalog.iter_vectors():
        bridge.store(ti, ids, raw, _rows(probs, ids))
    return bridge, len(rows)
