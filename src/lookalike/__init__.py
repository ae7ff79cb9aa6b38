"""lookalike: content-based image retrieval — search a collection by image and by text."""
from __future__ import annotations

__version__ = "0.2.0"


def open(directory, pipeline=None, **options):  # noqa: A001 - mirrors the built-in on purpose
    """Open (or create) an index directory: ``idx = lookalike.open("idx/")``."""
    from .api import open as _open

    return _open(directory, pipeline, **options)


__all__ = ["open", "__version__"]
