"""Metric-learning losses on L2-normalised descriptors of (query, positive, negatives...) tuples."""
from __future__ import annotations

import torch


def contrastive(q: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, margin: float = 0.7) -> torch.Tensor:
    """Siamese contrastive loss: ½‖q−p‖² for the positive, ½·max(0, m−‖q−n‖)² for each negative.

    q, pos: (B, D); negs: (B, K, D). Averaged over the tuples.
    """
    d_pos = (q - pos).norm(dim=1)
    d_neg = (q[:, None, :] - negs).norm(dim=2)
    loss = 0.5 * d_pos.pow(2) + 0.5 * (margin - d_neg).clamp(min=0).pow(2).sum(dim=1)
    return loss.mean()


def triplet(q: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Triplet loss max(0, ‖q−p‖² − ‖q−n‖² + m) summed over the negatives, averaged over tuples."""
    d_pos = (q - pos).pow(2).sum(dim=1)
    d_neg = (q[:, None, :] - negs).pow(2).sum(dim=2)
    return (d_pos[:, None] - d_neg + margin).clamp(min=0).sum(dim=1).mean()


LOSSES = {"contrastive": contrastive, "triplet": triplet}
DEFAULT_MARGIN = {"contrastive": 0.7, "triplet": 0.1}
