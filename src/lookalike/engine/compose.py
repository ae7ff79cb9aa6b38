"""Composed queries: several images and texts, each with a weight, some of them negative.

The syntax follows rclip: ``'2:golden retriever + pool.jpg - fruit'`` — parts joined by `` + ``
and `` - `` (spaces around the sign), each optionally ``WEIGHT:`` first; ``#12`` is the indexed
image with id 12, an existing file is a query image, anything else is text. How parts combine is
described in ``Searcher.search`` (image parts in descriptor space, text parts by their scores).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

from lookalike.errors import BadInputError
from lookalike.io import is_image_name

_SPLIT = re.compile(r"\s+([+-])\s+")
_WEIGHT = re.compile(r"^([0-9]*\.?[0-9]+):(.+)$", re.S)
_ID = re.compile(r"^#(\d+)$")


@dataclass
class Part:
    """One part of a composed query: exactly one of ``text``, ``image`` (anything ``search``
    takes as an image) or ``id`` (an indexed image); ``weight`` < 0 means "unlike this"."""

    weight: float = 1.0
    text: str | None = None
    image: Any = None
    id: int | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.text, self.image, self.id)) != 1:
            raise BadInputError("a query part is exactly one of a text, an image or an indexed id")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or self.weight == 0 \
                or self.weight != self.weight or abs(self.weight) == float("inf"):
            raise BadInputError(f"a query part's weight must be a non-zero number, not {self.weight!r}")
        if self.text is not None and not str(self.text).strip():
            raise BadInputError("a text part of the query is empty")

    @property
    def is_text(self) -> bool:
        return self.text is not None


def parse_query(query: str, allow_paths: bool = True) -> list[Part]:
    """Parts of an rclip-style query string. With ``allow_paths`` False (a server's clients),
    only ``#ID`` refers to an image: every other part is text."""
    if not isinstance(query, str) or not query.strip():
        raise BadInputError("the query is empty")
    text = query.strip()
    if re.search(r"(^|\s)[+-]$", text) or re.search(r"\s[+-]\s+[+-]\s", text):
        raise BadInputError(f"the query {query!r} has a sign without a part after it")
    sign = 1.0
    if text[0] in "+-" and len(text) > 1 and text[1].isspace():
        sign, text = (-1.0 if text[0] == "-" else 1.0), text[1:].strip()
    pieces = _SPLIT.split(text)
    terms = [(sign, pieces[0])] + [(-1.0 if pieces[j] == "-" else 1.0, pieces[j + 1])
                                  for j in range(1, len(pieces) - 1, 2)]
    return [_part(s, t.strip(), allow_paths) for s, t in terms]


def _part(sign: float, term: str, allow_paths: bool) -> Part:
    weight = 1.0
    m = _WEIGHT.match(_unquote(term))
    if m:
        weight, term = float(m.group(1)), m.group(2).strip()
        if weight == 0:
            raise BadInputError(f"the weight of {term!r} in the query is 0")
    term = _unquote(term)
    if not term:
        raise BadInputError("the query has an empty part (two signs in a row?)")
    ref = _ID.match(term)
    if ref:
        return Part(sign * weight, id=int(ref.group(1)))
    if allow_paths:
        path = os.path.expanduser(term)
        if os.path.isfile(path):
            return Part(sign * weight, image=path)
        if is_image_name(path) and not any(c.isspace() for c in term):
            raise BadInputError(f"{term}: no such image file (a query part naming an image must be an "
                                "existing file; quote it with a word around it to search it as text)")
    return Part(sign * weight, text=term)


def _unquote(term: str) -> str:
    term = term.strip()
    if len(term) >= 2 and term[0] == term[-1] and term[0] in "\"'":
        return term[1:-1].strip()
    return term


def as_parts(query: "str | Sequence[Part]", allow_paths: bool = True) -> list[Part]:
    if isinstance(query, str):
        return parse_query(query, allow_paths)
    parts = list(query)
    if not parts or not all(isinstance(p, Part) for p in parts):
        raise BadInputError("a composed query is a string or a non-empty list of Part")
    return parts
