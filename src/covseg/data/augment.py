"""Training-time augmentation: the paper's flips, lung-centred crops and intensity jitter.

The crops are what makes CPU training affordable (a 128x128 crop costs a quarter of a full
256x256 slice); the intensity jitter covers the gap between ma20's look and other scanners'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Augment:
    crop: int | None = 128
    flips: bool = True
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.08
    noise: float = 0.02

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one (H, W) float image in [0, 1] and its label map together."""
        if self.crop:
            image, label = lung_crop(image, label, self.crop, rng)
        if self.flips:
            if rng.random() < 0.5:
                image, label = image[:, ::-1], label[:, ::-1]
            if rng.random() < 0.5:
                image, label = image[::-1], label[::-1]
        inside = (label > 0) | (image > 0)  # lung-masked inputs keep their zero background
        if inside.any():
            image = jitter_intensity(image, inside, self, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def lung_crop(image: np.ndarray, label: np.ndarray, size: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """A size x size window whose centre lies inside the lungs' bounding box (padded if needed)."""
    h, w = label.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, ph), (0, pw)))
        label = np.pad(label, ((0, ph), (0, pw)))
        h, w = label.shape
    ys, xs = np.nonzero(label)
    if ys.size:
        cy = rng.integers(ys.min(), ys.max() + 1)
        cx = rng.integers(xs.min(), xs.max() + 1)
    else:
        cy, cx = h // 2, w // 2
    y0 = int(np.clip(cy - size // 2, 0, h - size))
    x0 = int(np.clip(cx - size // 2, 0, w - size))
    return image[y0:y0 + size, x0:x0 + size], label[y0:y0 + size, x0:x0 + size]


def jitter_intensity(image: np.ndarray, inside: np.ndarray, aug: Augment,
                     rng: np.random.Generator) -> np.ndarray:
    """Random gamma, contrast, brightness and noise inside `inside`; outside stays zero."""
    out = np.clip(image, 0.0, 1.0) ** rng.uniform(*aug.gamma)
    out = (out - 0.5) * rng.uniform(*aug.contrast) + 0.5 + rng.uniform(-aug.brightness, aug.brightness)
    out = out + rng.normal(0.0, aug.noise, out.shape)
    return np.where(inside, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)
