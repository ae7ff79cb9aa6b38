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


def _distances(d: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between L2-normalised rows, ‖a−b‖ = sqrt(2 − 2 a·b)."""
    return (2.0 - 2.0 * d @ d.T).clamp(min=1e-12).sqrt()


def batch_contrastive(d: torch.Tensor, labels: torch.Tensor, margin: float = 0.7) -> torch.Tensor:
    """Contrastive loss over every pair of a batch: the positives' mean ½‖a−b‖², plus the mean
    ½·max(0, m−‖a−n‖)² over the negatives inside the margin (the hard ones; easy pairs add nothing)."""
    dist = _distances(d)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(d), dtype=torch.bool)
    pos = dist[same & ~eye]
    hinge = (margin - dist[~same]).clamp(min=0)
    hard = hinge > 0
    loss_pos = 0.5 * pos.pow(2).mean() if len(pos) else d.sum() * 0
    loss_neg = 0.5 * hinge[hard].pow(2).mean() if bool(hard.any()) else d.sum() * 0
    return loss_pos + loss_neg


def batch_triplet(d: torch.Tensor, labels: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Batch-hard triplet loss: each image with its farthest positive and nearest negative
    (squared distances), max(0, d⁺ − d⁻ + m), averaged."""
    from lookalike.train.mining import hardest

    dist2 = (2.0 - 2.0 * d @ d.T).clamp(min=0)
    far_pos, near_neg = hardest(dist2, labels[:, None] == labels[None, :])
    if not len(far_pos):
        return d.sum() * 0
    return (far_pos - near_neg + margin).clamp(min=0).mean()


BATCH_LOSSES = {"contrastive": batch_contrastive, "triplet": batch_triplet}
