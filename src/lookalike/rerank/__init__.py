"""Re-ranking steps, one file per method, registered by name in ``RERANKERS``.

The steps' modules are imported by ``load()`` (not on import of the package), so that a process
that never re-ranks does not pay for scipy and OpenCV.
"""
from lookalike.registry import Registry
from lookalike.rerank.base import RERANKERS, Reranker


def load() -> Registry:
    """The registry with every step: a new step is a module here and its name in this import."""
    from lookalike.rerank import dba, diffusion, krnn, qe, sv  # noqa: F401  (each registers itself)

    return RERANKERS


__all__ = ["RERANKERS", "Reranker", "load"]
