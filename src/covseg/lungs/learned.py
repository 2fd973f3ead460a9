"""covseg's learned lung model: a small U-Net trained on ma20's lung masks (configs/lungs_ma20.yaml).

It works on any slice through the preprocessing contract (whole slice, min-max + CLAHE, at half
the model scale: 128 pixels across), so it serves pictures, where HU thresholds cannot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from covseg.infer.predictor import WEIGHTS_DIR, load_model
from covseg.infer.preprocess import Intensity, enhance
from covseg.infer.resample import resize_planes
from covseg.lungs.threshold import largest_components, split_left_right

DEFAULT_LUNG_WEIGHTS = WEIGHTS_DIR / "lungs_ma20.pt"
LUNG_MODEL_PX = 128


class LungModel:
    """`LungModel().apply(stack, intensity)` -> (z, y, x) uint8: 0 none, 1 right, 2 left lung."""

    def __init__(self, weights: str | Path | None = None, batch_size: int = 16):
        self.model, self.meta = load_model(weights or DEFAULT_LUNG_WEIGHTS, model="lung_unet")
        self.batch_size = batch_size

    def probabilities(self, stack: np.ndarray, intensity: Intensity | str) -> np.ndarray:
        """Lung probability per pixel, at the stack's own size."""
        enhanced = np.stack([enhance(plane, intensity) for plane in stack])
        small = resize_planes(enhanced, (LUNG_MODEL_PX, LUNG_MODEL_PX))
        out = []
        with torch.inference_mode():
            for k in range(0, len(small), self.batch_size):
                x = torch.from_numpy(small[k:k + self.batch_size, None])
                out.append(torch.softmax(self.model(x), 1)[:, 1].numpy())
        return resize_planes(np.concatenate(out), stack.shape[1:])

    def apply(self, stack: np.ndarray, intensity: Intensity | str) -> np.ndarray:
        """Slice by slice (the stack may hold unrelated pictures): largest parts, split in two."""
        lungs = self.probabilities(stack, intensity) > 0.5
        sides = np.zeros(stack.shape, dtype=np.uint8)
        for z in np.nonzero(lungs.any(axis=(1, 2)))[0]:
            sides[z] = split_left_right(largest_components(lungs[z][None], keep_ratio=0.05))[0]
        return sides
