"""Training losses by name: the paper's inverse-frequency weighted CE, and MONAI's Dice losses."""
from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from covseg.errors import InputError
from covseg.labels import ABNORMAL

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


class LungTarget(nn.Module):
    """The lung model's loss on 0 / 1 abnormal / 2 normal label maps: `loss` of lung (label > 0)
    against not, plus `lesion_weight` times the cross-entropy over the abnormal pixels alone.
    Those must be lung, and they are few and at the edge: a lung-vs-not loss lets a dense lesion
    at the pleura go for a smoother border."""

    def __init__(self, loss: nn.Module, lesion_weight: float = 0.0):
        super().__init__()
        self.loss, self.lesion_weight = loss, lesion_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lung = (labels > 0).long()
        out = self.loss(logits, lung)
        lesion = labels == ABNORMAL
        if self.lesion_weight and bool(lesion.any()):
            ce = nn.functional.cross_entropy(logits, lung, reduction="none")
            out = out + self.lesion_weight * ce[lesion].mean()
        return out


def distillation(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL divergence from the teachers' class probabilities to the network's, averaged over the
    lung pixels (label > 0): outside the lungs the input is zero and the class is known, and
    counting it would dilute what the teachers know about lesion edges and faint disease."""
    lung = labels > 0
    if not bool(lung.any()):
        return logits.sum() * 0.0
    target = torch.log_softmax(teacher.float(), dim=1)
    kl = (target.exp() * (target - torch.log_softmax(logits, dim=1))).sum(1)
    return kl[lung].mean()


def build_loss(name: str, labels: np.ndarray, num_classes: int, target: str = "lesions",
               lesion_weight: float = 0.0) -> nn.Module:
    """Loss module taking (logits N,C,H,W; labels N,H,W long); for the lung target, labels are
    the 0 / 1 abnormal / 2 normal maps and the loss is `LungTarget`'s."""
    if target == "lungs":
        return LungTarget(build_loss(name, (labels > 0).astype(np.uint8), num_classes), lesion_weight)
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "ce_weighted":
        return nn.CrossEntropyLoss(weight=inverse_frequency_weights(labels, num_classes))
    if name == "dice":
        return _TargetAsChannel(DiceLoss(to_onehot_y=True, softmax=True))
    if name == "dice_ce":
        return _TargetAsChannel(DiceCELoss(to_onehot_y=True, softmax=True))
    raise InputError(f"unknown loss '{name}'; choose one of: {', '.join(LOSSES)}")
