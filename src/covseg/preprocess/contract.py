"""The one contract between a scan slice and the segmentation model.

Training (ma20's 8-bit slices) and inference (HU volumes, pictures) both call `model_input`, so a
model trained on one kind of source sees the same kind of input from the others:

1. Intensity: the slice is brought to what ma20's repacker made of its scans: HU are clipped to
   [-1024, 2000], then every slice is min-max scaled to 8 bits and contrast-enhanced with OpenCV's
   CLAHE (8x8 tiles, clip limit 7), as the repacker did, then scaled to [0, 1]. An 8-bit picture
   (`Intensity.DISPLAY`) gets the same min-max + CLAHE. ma20 slices (`Intensity.ENHANCED`) already
   had it and are only scaled to [0, 1]. Slices a training recipe already prepared
   (`Intensity.PREPARED`, covseg.data.recipes) pass through. A picture may be enhanced already
   (a user's PNG of an ma20 slice): enhanced again, its lungs look unlike anything the model
   learned, so `picture_clahe` decides per picture whether the CLAHE step runs (see there).
2. Lung masking: the result is multiplied by the lung mask, as in the paper.
3. Scale: the model works at ma20's scale, 256 pixels across a typical chest field of view,
   about 1.4 mm a pixel (coronacases: 512 x ~0.7 mm, halved by the repacker). `scale_factor`
   gives the in-plane zoom from a slice's pixel size, or from its matrix when the size is unknown.
"""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from covseg.intensity import Intensity


MODEL_FOV_PX = 256
MODEL_PIXEL_MM = 1.4
HU_CLIP = (-1024.0, 2000.0)
CLAHE_CLIP = 7.0  # OpenCV's units (scikit-image's 7/256 gives the same picture, 25x slower)
CLAHE_TILES = (8, 8)
# The 10th, 25th, 50th, 75th and 90th percentiles of the lungs' values on ma20's training slices
# (folds 1-3, every 10th slice, in [0, 1]; the median slice's): what the model learned lungs look like.
LUNG_PERCENTILES = (10, 25, 50, 75, 90)
MA20_LUNG_LOOK = (0.098, 0.167, 0.255, 0.373, 0.502)


def scale_factor(matrix_px: int, pixel_mm: float | None = None) -> float:
    """In-plane zoom to the model's scale: by pixel size in mm if known, else by matrix size."""
    if pixel_mm:
        return float(pixel_mm) / MODEL_PIXEL_MM
    return MODEL_FOV_PX / float(matrix_px)


def enhance(slice2d: np.ndarray, intensity: Intensity | str, clahe: bool = True) -> np.ndarray:
    """Slice -> float32 image in [0, 1] with ma20's min-max + CLAHE look (`clahe` False: the
    min-max alone, for a picture that is enhanced already)."""
    intensity = Intensity(intensity)
    img = np.asarray(slice2d, dtype=np.float32)
    if intensity is Intensity.PREPARED:
        return img
    if intensity is Intensity.ENHANCED:
        return img / 255.0
    if intensity is Intensity.HU:
        img = np.clip(img, *HU_CLIP)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros_like(img)
    img8 = np.rint((img - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return (_clahe().apply(img8) if clahe else img8).astype(np.float32) / 255.0


def picture_clahe(plane: np.ndarray, lungs: np.ndarray) -> bool:
    """Whether a picture's CLAHE step runs: the view (min-max alone, or with CLAHE) whose lungs
    look more like ma20's (`MA20_LUNG_LOOK`, mean distance of the percentiles) is the one fed.

    Measured with the data sets' lungs (`benchmarks/picture_contrast.py`): ma20's own PNGs keep
    their look in 89-97 % of slices (enhanced again, they lost 0.04-0.05 abnormal Dice); MedSeg's
    lung-window pictures in 67-80 %; lung- and wide-window renderings of the HU phantom get CLAHE
    in 83-100 % (without it, 0.04-0.09 less abnormal Dice there).
    """
    inside = np.asarray(lungs) > 0
    if not inside.any():
        return True
    look = np.asarray(MA20_LUNG_LOOK)

    def distance(view: np.ndarray) -> float:
        return float(np.abs(np.percentile(view[inside], LUNG_PERCENTILES) - look).mean())

    return distance(enhance(plane, Intensity.DISPLAY)) < distance(
        enhance(plane, Intensity.DISPLAY, clahe=False))


@cache
def _clahe() -> cv2.CLAHE:
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)


def model_input(slice2d: np.ndarray, lungs: np.ndarray | None, intensity: Intensity | str,
                mask_lungs: bool = True, clahe: bool = True) -> np.ndarray:
    """Enhanced slice multiplied by its lung mask: the array the network is fed (H, W float32)."""
    img = enhance(slice2d, intensity, clahe)
    if mask_lungs and lungs is not None:
        img = img * (np.asarray(lungs) > 0)
    return img.astype(np.float32, copy=False)
