"""Extensions: per-image extras an index keeps beside its vectors (text rows, local features).

An extension is declared by the pipeline (``registry.extensions_for``) and driven by the engine's
writer: ``prepare`` does the slow part of one image (OCR, keypoints) before the batch's transaction,
``write`` stores it inside that transaction, ``remove`` deletes what belonged to removed images in
theirs. So extras always change together with the images they belong to, and a search only reads.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class WriteContext:
    """What an extension may read while a batch is written."""

    folder: Path  # the index folder (files such as the text bridge)
    setting: Callable[[str, Any], Any]  # the catalog's settings: setting(key, default)


class Extension:
    """Base class: no tables, nothing per image."""

    name = "extension"
    searches_text = False

    def schema(self, db: sqlite3.Connection) -> None:
        """Create this extension's tables (idempotent)."""

    def prepare(self, result: Any, ctx: WriteContext) -> Any:
        """The slow part for one described image (``engine.runners.Result``), outside the transaction."""
        return None

    def write(self, db: sqlite3.Connection, image_id: int, result: Any, prepared: Any,
              ctx: WriteContext) -> None:
        """Store one image's extras inside the batch's transaction."""

    def remove(self, db: sqlite3.Connection, ids: list[int]) -> None:
        """Delete the extras of removed images inside the transaction that removes them."""
