"""Training losses by name: the paper's inverse-frequency weighted CE, and MONAI's Dice losses."""
from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from covseg.errors import InputError

LOSSES = ("ce", "ce_weighted", "dice", "dice_ce")


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Class weights proportional to 1 / frequency, scaled to sum to `num_classes` (the paper's)."""
    counts = np.bincount(labels.ravel(), minlength=num_classes).astype(np.float64)
    inv = 1.0 / np.maximum(counts, 1.0)
    return torch.tensor(inv * num_classes / inv.sum(), dtype=torch.float32)


class _TargetAsChannel(nn.Module):
    """MONAI's Dice losses want the label map as (N, 1, H, W)."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target.unsqueeze(1))


def build_loss(name: str, labels: np.ndarray, num_classes: int) -> nn.Module:
    """Loss module taking (logits N,C,H,W; labels N,H,W long)."""
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "ce_weighted":
        return nn.CrossEntropyLoss(weight=inverse_frequency_weights(labels, num_classes))
    if name == "dice":
        return _TargetAsChannel(DiceLoss(to_onehot_y=True, softmax=True))
    if name == "dice_ce":
        return _TargetAsChannel(DiceCELoss(to_onehot_y=True, softmax=True))
    raise InputError(f"unknown loss '{name}'; choose one of: {', '.join(LOSSES)}")
