"""Soft targets for distillation: the teachers' mean logits on each whole training slice.

An ensemble of networks scores better than its members (docs/results.md: +0.013 Dice for two
seeds) but costs their sum at inference. Distillation trains one network towards the ensemble's
outputs, so the ensemble's knowledge ships at one network's cost. The teachers see each slice
once, as the lung-masked input a step would give before its jitter; the logits are then turned,
flipped and cropped with the sample (covseg.data.augment), so no teacher runs inside a step.
The teachers are an ensemble as inference runs one (`LesionSegmenter`, PyTorch backend, its
precision), a slice at a time: on a 2-core AVX-512 EPYC a 256 x 256 slice took 0.30 s fp32 in a
batch of 8, 0.25 s alone and 0.12 s alone in bf16.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def teacher_logits(weights: Sequence[str], images: np.ndarray, lungs: np.ndarray,
                   mask_lungs: bool) -> np.ndarray:
    """(N, C, H, W) float16: the mean of the teachers' logits on (N, H, W) enhanced slices
    (lung-masked as training masks them)."""
    from covseg.infer import LesionSegmenter

    teachers = LesionSegmenter(list(weights), backend="torch")
    inputs = images * lungs if mask_lungs else images
    n, h, w = inputs.shape
    m = teachers.multiple
    padded = np.zeros((1, h + -h % m, w + -w % m), np.float32)

    def one(i: int) -> np.ndarray:
        padded[0, :h, :w] = inputs[i]
        return teachers.logits(padded)[0, :, :h, :w].astype(np.float16)

    return np.stack([one(i) for i in range(n)])
