"""The Python API: ``idx = lookalike.open("idx/"); idx.add("photos/"); idx.search(image, k=10)``."""
from __future__ import annotations

import os
from typing import Any

from lookalike.engine.compose import Part, parse_query
from lookalike.engine.files import walk
from lookalike.engine.filters import Filters
from lookalike.engine.index import Index
from lookalike.engine.results import AddReport, Hit, SearchResult
from lookalike.errors import (BadInputError, BusyError, ConflictError, ImageError, LookalikeError, NotFoundError,
                              UnsupportedError)

__all__ = ["open_index", "Index", "Hit", "SearchResult", "AddReport", "Filters", "Part", "parse_query", "walk", "LookalikeError", "BadInputError",
           "BusyError", "ConflictError", "ImageError", "NotFoundError", "UnsupportedError"]


def open_index(directory: str | os.PathLike, pipeline: str | None = None, store: str | None = None,
               readonly: bool = False, recall: float | None = None, memory_mb: float | None = None,
               **options: Any) -> Index:
    """Open (or create) the index in ``directory``; ``pipeline`` (a spec such as ``"default"`` or
    ``"gem+aqe(alpha=3)"``) is needed only to create one, ``store`` picks the vector store (a
    ``make_store`` spec, default ``auto``); ``recall`` is the recall@10 ``auto`` tunes its search
    to (default 0.98) and ``memory_mb`` its memory budget; ``readonly`` opens an existing index
    for searching only."""
    return Index(directory, pipeline, options or None, create=not readonly, readonly=readonly, store=store,
                 recall=recall, memory_mb=memory_mb)
