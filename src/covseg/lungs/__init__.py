"""Lung extraction, offline: classical HU thresholds for CT, a learned model for pictures."""
from __future__ import annotations

import numpy as np

from covseg.errors import InputError
from covseg.infer.preprocess import Intensity
from covseg.lungs.display import extract_lungs_display
from covseg.lungs.threshold import LEFT, RIGHT, extract_lungs_hu

METHODS = ("auto", "hu", "model", "intensity")


def extract_lungs(array: np.ndarray, spacing: tuple[float, float, float],
                  intensity: Intensity, method: str = "auto") -> np.ndarray:
    """(z, y, x) image -> (z, y, x) uint8 lung labels: 0 none, 1 right lung, 2 left lung.

    method "auto": HU thresholds for HU input, the learned model for pictures (falling back to
    the intensity method if no lung weights are installed); or force "hu", "model", "intensity".
    """
    if method not in METHODS:
        raise InputError(f"unknown lung method '{method}'; choose one of: {', '.join(METHODS)}")
    hu = Intensity(intensity) is Intensity.HU
    if method == "hu" or (method == "auto" and hu):
        if not hu:
            raise InputError("the HU lung method needs a CT in Hounsfield units; this input is a "
                             "picture: use --lungs model")
        return extract_lungs_hu(array, spacing)
    from covseg.lungs.learned import DEFAULT_LUNG_WEIGHTS, LungModel
    if method == "model" or (method == "auto" and DEFAULT_LUNG_WEIGHTS.is_file()):
        return LungModel().apply(array, intensity)
    return extract_lungs_display(array)


__all__ = ["LEFT", "METHODS", "RIGHT", "extract_lungs", "extract_lungs_display", "extract_lungs_hu"]
