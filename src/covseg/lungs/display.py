"""Lung extraction from 8-bit pictures (no HU): dark, textured regions, slice by slice.

Used for PNG/JPG slices and the medseg100 pictures. Without HU the air threshold comes from
Otsu's method; components of pure black (air outside the patient, or the zero background of an
already lung-masked picture) are dropped, the large dark regions kept, closed and hole-filled.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from covseg.labels import LEFT, RIGHT
from covseg.lungs.threshold import close_and_fill, split_left_right

MIN_AREA_FRACTION = 0.01


def extract_lungs_display(image: np.ndarray, closing_px: int = 6) -> np.ndarray:
    """(z, y, x) display-intensity stack -> (z, y, x) uint8: 0 none, 1 right, 2 left lung."""
    out = np.zeros(image.shape, dtype=np.uint8)
    for z, plane in enumerate(np.asarray(image, dtype=np.float32)):
        lo, hi = float(plane.min()), float(plane.max())
        if hi <= lo:
            continue
        dark = plane < threshold_otsu(plane)
        black = plane <= lo + 0.02 * (hi - lo)
        lab, n = ndi.label(dark)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        black_share = ndi.mean(black, lab, np.arange(1, n + 1))
        keep = [i + 1 for i in range(n) if sizes[i] >= MIN_AREA_FRACTION * plane.size
                and black_share[i] < 0.5]
        lungs = np.isin(lab, keep)
        if not lungs.any():
            continue
        lungs = ndi.binary_opening(lungs, iterations=2)
        sides = split_left_right(lungs[None])[0]
        body = ~(black & ~lungs)
        for label in (RIGHT, LEFT):
            filled = close_and_fill((sides == label)[None], body[None], closing_px)[0]
            out[z][filled & (out[z] == 0)] = label
    return out
