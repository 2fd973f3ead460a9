"""Lung extraction, offline: classical HU thresholds for CT, a learned model for pictures, and
a lung-masked picture's own lungs."""
from __future__ import annotations

import numpy as np

from covseg.errors import InputError
from covseg.intensity import Intensity
from covseg.lungs.display import extract_lungs_display
from covseg.lungs.masked import is_lung_masked, masked_lungs
from covseg.labels import LEFT, RIGHT
from covseg.lungs.threshold import extract_lungs_hu, split_left_right

METHODS = ("auto", "hu", "model", "masked", "intensity")


def resolve_method(method: str, intensity: Intensity, array: np.ndarray | None = None) -> str:
    """The lung method that will run: "auto" becomes "hu" for HU input; for pictures "masked"
    where `array` is lung-masked already (covseg.lungs.masked), else "model" (or "intensity"
    where no lung weights are installed); a forced method is checked. Decided once, here, and
    recorded in the report as decided."""
    if method not in METHODS:
        raise InputError(f"unknown lung method '{method}'; choose one of: {', '.join(METHODS)}")
    hu = Intensity(intensity) is Intensity.HU
    if method == "hu" and not hu:
        raise InputError("the HU lung method needs a CT in Hounsfield units; this input is a "
                         "picture: use --lungs model")
    if method == "masked" and hu:
        raise InputError("a CT in Hounsfield units is not a lung-masked picture: use --lungs hu")
    if method != "auto":
        return method
    if hu:
        return "hu"
    if array is not None and is_lung_masked(array):
        return "masked"
    from covseg.lungs.learned import DEFAULT_LUNG_WEIGHTS
    return "model" if DEFAULT_LUNG_WEIGHTS.is_file() else "intensity"


def extract_lungs(array: np.ndarray, spacing: tuple[float, float, float],
                  intensity: Intensity, method: str = "auto") -> np.ndarray:
    """(z, y, x) image -> (z, y, x) uint8 lung labels: 0 none, 1 right lung, 2 left lung.

    method: see `resolve_method` ("auto", or force "hu", "model", "masked", "intensity").
    """
    method = resolve_method(method, intensity, array)
    if method == "hu":
        return extract_lungs_hu(array, spacing)
    if method == "model":
        from covseg.lungs.learned import LungModel
        return LungModel.shared().apply(array, intensity)
    if method == "masked":
        return masked_lungs(array)
    return extract_lungs_display(array)


def split_slices(lungs: np.ndarray) -> np.ndarray:
    """Right/left labels slice by slice, for stacks of unrelated pictures."""
    return np.stack([split_left_right(plane[None])[0] for plane in np.asarray(lungs) > 0])


__all__ = ["LEFT", "METHODS", "RIGHT", "extract_lungs", "extract_lungs_display", "extract_lungs_hu",
           "resolve_method", "split_slices"]
