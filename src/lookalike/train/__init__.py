"""Supervised fine-tuning: siamese (contrastive) or triplet metric learning of the backbone's last
blocks and GeM exponent on labelled images; the result is a model folder usable as a backbone."""
from __future__ import annotations

from lookalike.train.loop import TrainConfig, train
from lookalike.train.model import ModelSpec, load_model

__all__ = ["TrainConfig", "train", "ModelSpec", "load_model"]
