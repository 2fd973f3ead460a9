"""The one contract between a scan slice and the segmentation model.

Training (ma20's 8-bit slices) and inference (HU volumes, pictures) both call `model_input`, so a
model trained on one kind of source sees the same kind of input from the others:

1. Intensity: the slice is brought to what ma20's repacker made of its scans: HU are clipped to
   [-1024, 2000], then every slice is min-max scaled to 8 bits and contrast-enhanced with OpenCV's
   CLAHE (8x8 tiles, clip limit 7), as the repacker did, then scaled to [0, 1]. An 8-bit picture
   (`Intensity.DISPLAY`) gets the same min-max + CLAHE. ma20 slices (`Intensity.ENHANCED`) already
   had it and are only scaled to [0, 1]. Slices a training recipe already prepared
   (`Intensity.PREPARED`, covseg.data.recipes) pass through.
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


def scale_factor(matrix_px: int, pixel_mm: float | None = None) -> float:
    """In-plane zoom to the model's scale: by pixel size in mm if known, else by matrix size."""
    if pixel_mm:
        return float(pixel_mm) / MODEL_PIXEL_MM
    return MODEL_FOV_PX / float(matrix_px)


def enhance(slice2d: np.ndarray, intensity: Intensity | str) -> np.ndarray:
    """Slice -> float32 image in [0, 1] with ma20's min-max + CLAHE look."""
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
    return _clahe().apply(img8).astype(np.float32) / 255.0


@cache
def _clahe() -> cv2.CLAHE:
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)


def model_input(slice2d: np.ndarray, lungs: np.ndarray | None, intensity: Intensity | str,
                mask_lungs: bool = True) -> np.ndarray:
    """Enhanced slice multiplied by its lung mask: the array the network is fed (H, W float32)."""
    img = enhance(slice2d, intensity)
    if mask_lungs and lungs is not None:
        img = img * (np.asarray(lungs) > 0)
    return img.astype(np.float32, copy=False)
