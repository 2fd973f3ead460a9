"""Named preprocessing recipes: how a user's CT slice becomes the network's input.

- `covseg`: covseg's own contract (`infer.preprocess.enhance`): HU clipped, min-max scaled per
  slice and CLAHE-enhanced, in [0, 1]; what `covseg segment` feeds a model, so a model trained
  with it can be used on scans.
- `thesis`: the thesis' recipe: HU clipped to -1000..1000 and divided by 1000, in [-1, 1]. Its
  models are for `covseg evaluate` on data prepared the same way, not for `covseg segment`.
- `enhanced`: the values already are ma20's enhanced 8-bit slices (0..255): scaled to [0, 1].
"""
from __future__ import annotations

import numpy as np

from covseg.errors import InputError
from covseg.intensity import Intensity

RECIPES = ("covseg", "thesis", "enhanced")
THESIS_HU = (-1000.0, 1000.0)


def check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise InputError(f"unknown recipe '{recipe}'; choose one of: {', '.join(RECIPES)}")


def source_intensity(recipe: str, found: Intensity, values: np.ndarray, source) -> Intensity:
    """What a case's values mean under `recipe`, or one refusal naming the file."""
    if recipe == "thesis" and found is not Intensity.HU:
        raise InputError(f"{source}: the thesis recipe clips Hounsfield units, but this image is "
                         "not in HU; use recipe: covseg")
    if recipe == "enhanced":
        if float(values.min()) < 0 or float(values.max()) > 255:
            raise InputError(f"{source}: recipe 'enhanced' expects ma20-like 0..255 slices, found "
                             f"{float(values.min()):g}..{float(values.max()):g}; use recipe: covseg")
        return Intensity.ENHANCED
    return found


def prepare(planes: np.ndarray, intensity: Intensity, recipe: str) -> np.ndarray:
    """(N, H, W) slices of one case -> (N, H, W) float32 network inputs (before lung masking)."""
    if recipe == "thesis":
        return (np.clip(planes, *THESIS_HU) / 1000.0).astype(np.float32)
    from covseg.preprocess.contract import enhance

    return np.stack([enhance(p, intensity) for p in planes]).astype(np.float32)
