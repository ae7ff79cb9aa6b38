"""Filters on the catalog's metadata, turned into the set of ids a search may return.

The allowed ids come from SQL over the catalog (``engine.metadata`` columns) and, for a keyword,
from the text tables' full-text index; the search then runs over those ids only
(``VectorStore.search_within``), so ``k`` results come back whenever ``k`` images pass.
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from lookalike.errors import BadInputError, UnsupportedError
from lookalike.io import file_type


@dataclass
class Filters:
    """What a result must be. ``folder``: an absolute folder (its subfolders included);
    ``date_from``/``date_to``: ``YYYY-MM-DD`` (inclusive) or ISO date-times, on the date taken;
    ``camera``: a case-insensitive part of the camera's name; ``min_``/``max_width``/``height``:
    pixels; ``types``: file types (``jpg``, ``png``; a comma-separated string works too);
    ``keyword``: a word of the image's text (indexes with text only)."""

    folder: str | None = None
    date_from: str | date | None = None
    date_to: str | date | None = None
    camera: str | None = None
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    types: Sequence[str] | str | None = None
    keyword: str | None = None

    @classmethod
    def of(cls, value: "Filters | Mapping[str, Any] | None") -> "Filters | None":
        """Filters from Filters, a mapping of its fields (``type`` is taken for ``types``) or None."""
        if value is None or isinstance(value, Filters):
            return value if value is None or value.active else None
        if not isinstance(value, Mapping):
            raise BadInputError(f"filters must be a Filters or a mapping, not {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        given = {("types" if k == "type" else k): v for k, v in value.items() if v is not None}
        unknown = sorted(set(given) - known)
        if unknown:
            raise BadInputError(f"unknown filter {unknown[0]!r} (known: {', '.join(sorted(known))})")
        out = cls(**given)
        return out if out.active else None

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) not in (None, "", [], ()) for f in fields(self))

    def where(self) -> tuple[str, list[Any]]:
        """An SQL condition on ``images`` and its parameters (keyword aside)."""
        conds, params = ["status='ok'"], []
        if self.folder:
            conds[0] = "+status='ok'"  # so that SQLite ranges over the folder index, not over status
            folder = os.path.abspath(os.fspath(self.folder)).rstrip(os.sep) or os.sep
            inside = folder.rstrip(os.sep) + os.sep  # subfolders: paths from "F/" up to "F0" ('0' follows '/')
            conds.append("(folder = ? OR (folder >= ? AND folder < ?))")
            params += [folder, inside, inside[:-1] + chr(ord(os.sep) + 1)]
        if self.date_from not in (None, ""):
            conds.append("taken >= ?")
            params.append(_when(self.date_from, "date_from", end=False))
        if self.date_to not in (None, ""):
            conds.append("taken < ?")
            params.append(_when(self.date_to, "date_to", end=True))
        if self.camera:
            conds.append("instr(lower(camera), lower(?)) > 0")
            params.append(str(self.camera).strip())
        for name, col, op in (("min_width", "width", ">="), ("max_width", "width", "<="),
                              ("min_height", "height", ">="), ("max_height", "height", "<=")):
            v = getattr(self, name)
            if v is not None:
                conds.append(f"{col} {op} ?")
                params.append(_pixels(v, name))
        types = self.type_list()
        if types:
            conds.append(f"type IN ({','.join('?' * len(types))})")
            params += types
        return " AND ".join(conds), params

    def type_list(self) -> list[str]:
        t = self.types
        if t is None:
            return []
        items = t.split(",") if isinstance(t, str) else list(t)
        return sorted({file_type(str(x).strip().lstrip(".")) for x in items if str(x).strip()})

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) not in (None, "")}


def _pixels(v: Any, name: str) -> int:
    if isinstance(v, bool):
        raise BadInputError(f"{name} must be a whole number of pixels, not {v!r}")
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a whole number of pixels, not {v!r}") from None
    if n < 0 or n != float(v):
        raise BadInputError(f"{name} must be a whole, non-negative number of pixels, not {v!r}")
    return n


def _when(v: Any, name: str, end: bool) -> str:
    """The bound compared with the ISO text of ``taken``: a date covers its whole day."""
    if isinstance(v, datetime):
        return (v + timedelta(seconds=1) if end else v).isoformat(timespec="seconds")
    if isinstance(v, date):
        return (v + timedelta(days=1) if end else v).isoformat()
    text = str(v).strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return (d + timedelta(days=1) if end else d).isoformat()
        t = datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise BadInputError(f"{name} must be a date YYYY-MM-DD (or an ISO date-time), not {text!r}") from None
    return (t + timedelta(seconds=1) if end else t).isoformat(timespec="seconds")


def allowed_ids(db: sqlite3.Connection, filters: Filters, has_metadata: bool,
                keyword_ids: Callable[[str], np.ndarray] | None) -> np.ndarray | None:
    """Sorted ids of the indexed images that pass ``filters``; None when every one passes (then
    the search needs no filter: counting is cheaper than listing them all)."""
    where, params = filters.where()
    if where != "status='ok'" and not has_metadata:
        raise UnsupportedError("this index was written by an older lookalike and has no metadata to filter on: "
                               "run `lookalike index` on it once (it adds the metadata)")
    if not filters.keyword:
        passing = db.execute(f"SELECT COUNT(*) FROM images WHERE {where}", params).fetchone()[0]
        if passing == db.execute("SELECT COUNT(*) FROM images WHERE status='ok'").fetchone()[0]:
            return None
    ids = np.fromiter((r[0] for r in db.execute(f"SELECT id FROM images WHERE {where}", params)), np.int64)
    if filters.keyword:
        if keyword_ids is None:
            raise UnsupportedError("a keyword filter needs an index with text (pipeline text or default)")
        ids = np.intersect1d(ids, keyword_ids(str(filters.keyword)))
    return np.sort(ids)
