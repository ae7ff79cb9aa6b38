"""lookalike: content-based image retrieval — search a collection by image and by text."""
from __future__ import annotations

from lookalike.version import __version__


def open(directory, pipeline=None, store=None, readonly=False, **options):  # noqa: A001 - lookalike.open, on purpose
    """Open (or create) an index directory: ``idx = lookalike.open("idx/")``."""
    from lookalike.api import open_index

    return open_index(directory, pipeline, store=store, readonly=readonly, **options)


__all__ = ["open", "__version__"]
