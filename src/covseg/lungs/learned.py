"""covseg's learned lung model: a small U-Net trained on ma20's lung masks and medseg100's
lung-window training pictures (configs/lungs_ma20_medseg.yaml; docs/results.md, "Lungs").

It works on any slice through the preprocessing contract (whole slice, min-max + CLAHE, padded to
a square so the aspect is kept, at half the model scale: 128 pixels across), so it serves
pictures, where HU thresholds cannot. It was trained across framings (whole slices to tight crops),
quarter turns, mirrors and re-windowed pictures, so a picture needs no framing before it. The
MedSeg pictures (pseudo lungs: their lesions joined to the dark lungs) teach it that dense
disease at the pleura of a lung-window picture is lung.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

from covseg.models.weights import WEIGHTS_DIR, load_model
from covseg.intensity import Intensity
from covseg.preprocess.contract import enhance
from covseg.preprocess.resample import resize_planes
from covseg.labels import LEFT, RIGHT
from covseg.lungs.threshold import close_and_fill, largest_components, split_left_right

DEFAULT_LUNG_WEIGHTS = WEIGHTS_DIR / "lungs_ma20_medseg.pt"
LUNG_MODEL_PX = 128
LUNG_THRESHOLD = 0.5


class LungModel:
    """`LungModel().apply(stack, intensity)` -> (z, y, x) uint8: 0 none, 1 right, 2 left lung."""

    def __init__(self, weights: str | Path | None = None, batch_size: int = 16):
        self.model, self.meta = load_model(weights or DEFAULT_LUNG_WEIGHTS, model="lung_unet")
        self.batch_size = batch_size

    @classmethod
    @cache
    def shared(cls) -> "LungModel":
        """The shipped model, loaded once per process."""
        return cls()

    def probabilities(self, stack: np.ndarray, intensity: Intensity | str) -> np.ndarray:
        """Lung probability per pixel, at the stack's own size: the most a pixel is lung in any
        of the four quarter turns of the input, since a picture may come in any of them.

        The maximum, not the mean: a turned view that is unsure of a dense lesion at the wall
        must not outvote one that sees lung there. Chosen on medseg100's training pictures:
        reference lesion pixels inside the lungs 78.3 % with one view, 71.9 % with the mean of
        four, 85.2 % with their maximum (docs/results.md, "Lungs").
        """
        h, w = stack.shape[1:]
        side = max(h, w)
        enhanced = np.zeros((len(stack), side, side), np.float32)  # padded square: aspect kept
        enhanced[:, :h, :w] = [enhance(plane, intensity) for plane in stack]
        small = resize_planes(enhanced, (LUNG_MODEL_PX, LUNG_MODEL_PX))
        out = []
        with torch.inference_mode():
            for k in range(0, len(small), self.batch_size):
                x = torch.from_numpy(small[k:k + self.batch_size, None])
                most = None
                for turns in range(4):
                    # lung = not background: a 2-class model (lung) or a 3-class one (abnormal, normal)
                    lung = 1.0 - torch.softmax(self.model(torch.rot90(x, turns, dims=(2, 3))), 1)[:, 0]
                    lung = torch.rot90(lung, -turns, dims=(1, 2))
                    most = lung if most is None else torch.maximum(most, lung)
                out.append(most.numpy())
        return resize_planes(np.concatenate(out), (side, side))[:, :h, :w]

    def apply(self, stack: np.ndarray, intensity: Intensity | str) -> np.ndarray:
        """Slice by slice (the stack may hold unrelated pictures): largest parts, split in two,
        each lung's holes filled (vessels, dense lesions inside it belong to it)."""
        lungs = self.probabilities(stack, intensity) > LUNG_THRESHOLD
        sides = np.zeros(stack.shape, dtype=np.uint8)
        everywhere = np.ones((1, *stack.shape[1:]), bool)
        for z in np.nonzero(lungs.any(axis=(1, 2)))[0]:
            split = split_left_right(largest_components(lungs[z][None], keep_ratio=0.05))
            for label in (RIGHT, LEFT):
                filled = close_and_fill(split == label, everywhere, 1)[0]
                sides[z][filled & (sides[z] == 0)] = label
        return sides
