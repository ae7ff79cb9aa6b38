"""Re-ranking steps, one file per method, registered by name in ``RERANKERS``."""
from .base import RERANKERS, Reranker  # noqa: F401
from . import dba, diffusion, krnn, qe  # noqa: F401  (registration)

__all__ = ["RERANKERS", "Reranker"]
