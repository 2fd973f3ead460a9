"""Lung extraction, offline: a classical HU method for CT, an intensity method for pictures."""
from __future__ import annotations

import numpy as np

from covseg.infer.preprocess import Intensity
from covseg.lungs.display import extract_lungs_display
from covseg.lungs.threshold import LEFT, RIGHT, extract_lungs_hu


def extract_lungs(array: np.ndarray, spacing: tuple[float, float, float],
                  intensity: Intensity) -> np.ndarray:
    """(z, y, x) image -> (z, y, x) uint8 lung labels: 0 none, 1 right lung, 2 left lung."""
    if Intensity(intensity) is Intensity.HU:
        return extract_lungs_hu(array, spacing)
    return extract_lungs_display(array)


__all__ = ["LEFT", "RIGHT", "extract_lungs", "extract_lungs_display", "extract_lungs_hu"]
