"""Soft targets for distillation: the teachers' mean logits on each whole training slice.

An ensemble of networks scores better than its members (docs/results.md: +0.013 Dice for two
seeds) but costs their sum at inference. Distillation trains one network towards the ensemble's
outputs, so the ensemble's knowledge ships at one network's cost. The teachers see each slice
once, as the lung-masked input a step would give before its jitter; the logits are then turned,
flipped and cropped with the sample (covseg.data.augment), so no teacher runs inside a step.
A slice at a time in channels-last, in the faster of fp32 and bf16 timed on this CPU: on a
2-core AVX-512 EPYC a 256 x 256 slice took 0.30 s fp32 in a batch of 8, 0.25 s alone and
0.12 s alone in bf16 (a first version took ten minutes for the rotation's 806 slices).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from covseg.errors import InputError
from covseg.runtime import autocast, fastest_precision


def teacher_logits(weights: Sequence[str], images: np.ndarray, lungs: np.ndarray,
                   mask_lungs: bool, num_classes: int) -> np.ndarray:
    """(N, C, H, W) float16: the mean of the teachers' logits on (N, H, W) enhanced slices
    (lung-masked as training masks them)."""
    inputs = images * lungs if mask_lungs else images
    total = sum(_logits(path, inputs, num_classes) for path in weights)
    return (total / len(weights)).astype(np.float16)


def _logits(path: str, inputs: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C, H, W) float32 logits of one teacher, a slice at a time."""
    from covseg.models import input_multiple
    from covseg.models.weights import load_model

    net, _ = load_model(path)
    net = net.to(memory_format=torch.channels_last)
    m = input_multiple(net)
    n, h, w = inputs.shape

    def one(i: int, precision: str) -> np.ndarray:
        x = np.pad(inputs[i].astype(np.float32), ((0, -h % m), (0, -w % m)))
        x = torch.from_numpy(x)[None, None].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(precision):
            return net(x).float().numpy()[0, :, :h, :w]

    precision, _ = fastest_precision(lambda p: one(0, p), repeats=2)
    first = one(0, precision)
    if first.shape[0] != num_classes:
        raise InputError(f"teacher {path} gives {first.shape[0]} classes; the student learns "
                         f"{num_classes}: give lesion models as teachers")
    return np.stack([first] + [one(i, precision) for i in range(1, n)])
