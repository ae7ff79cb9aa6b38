"""Re-ranking steps, one file per method, registered by name in ``RERANKERS``."""
from lookalike.rerank.base import RERANKERS, Reranker  # noqa: F401
from lookalike.rerank import dba, diffusion, krnn, qe, sv  # noqa: F401  (registration)

__all__ = ["RERANKERS", "Reranker"]
