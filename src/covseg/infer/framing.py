"""How a slice is framed for the lesion model: its zoom to ma20's scale and, for pictures, a turn.

CT with a pixel size is zoomed by it (the model works at 1.4 mm a pixel). A picture has no pixel
size and may be a whole slice, a tight crop of the lungs or a screenshot, stored upright or a
quarter turn off: its zoom comes from the lungs found in it, so that both lungs span what they
span on ma20's slices, and a picture whose lungs lie one above the other is turned upright first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from covseg.preprocess.contract import scale_factor

LUNG_WIDTH_PX = 172  # median width of both lungs together on ma20's 256-px training slices (F1-F3)
ZOOM_LIMITS = (0.25, 4.0)
TURNED_RATIO = 0.85  # lungs' box width / height below this: the picture lies on its side
WHOLE_SLICE = (0.8, 1.25)  # lung span / LUNG_WIDTH_PX at the matrix zoom: a whole slice
# A zoom from the lung extent is an estimate (lungs span 148-192 px on 80 % of ma20's slices), so
# such a picture is run at the estimate times each factor and its lesions voted (docs/results.md:
# chosen on MedSeg's training pictures and ma20 fold-3 crops, +0.009 and +0.025 abnormal Dice).
# The estimate itself comes first: the run whose contrast decisions the others reuse.
ZOOM_VOTE = (1.0, 0.85, 1.18)


@dataclass(frozen=True)
class Framing:
    zoom: float
    turns: int  # quarter turns (np.rot90 over y, x) applied before the lesion model, undone after
    basis: str  # "pixel size" | "matrix" | "lung extent"

    @property
    def zooms(self) -> tuple[float, ...]:
        """The zooms the lesion model runs at, this framing's own first: around an estimate
        (`ZOOM_VOTE`), else the one."""
        if self.basis != "lung extent":
            return (self.zoom,)
        return tuple(self.zoom * f for f in ZOOM_VOTE)

    def as_dict(self) -> dict:
        return {"zoom": round(self.zoom, 4), "quarter_turns": self.turns, "zoom_from": self.basis,
                "zooms_voted": len(self.zooms)}


def from_geometry(matrix_px: int, pixel_mm: float | None) -> Framing:
    """A CT's framing: by its pixel size, or by its matrix when the size is unknown."""
    basis = "pixel size" if pixel_mm else "matrix"
    return Framing(scale_factor(matrix_px, pixel_mm), 0, basis)


def turns_upright(lungs: np.ndarray) -> int:
    """0, or 1 when the lungs lie above each other (the picture is a quarter turn off).

    Two lungs side by side are the reliable sign: the line through their centres is horizontal
    in an upright axial slice. With one lung region the box's shape decides (both lungs together
    are about 1.5 times wider than tall on ma20, under 0.9 in 1 % of its slices).
    """
    plane = lungs.any(axis=0) if lungs.ndim == 3 else lungs
    lab, n = ndi.label(plane)
    if n == 0:
        return 0
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    if n >= 2 and sizes[order[1]] > 0.2 * sizes[order[0]]:
        (y1, x1), (y2, x2) = ndi.center_of_mass(plane, lab, [order[0] + 1, order[1] + 1])
        return int(abs(y2 - y1) > abs(x2 - x1))
    ys, xs = np.nonzero(plane)
    return int((np.ptp(xs) + 1) / (np.ptp(ys) + 1) < TURNED_RATIO)


def from_lungs(lungs: np.ndarray) -> Framing:
    """A picture's framing from its (upright) lungs.

    A whole slice (its lungs, zoomed by the matrix as a CT of unknown pixel size would be, span
    what lungs span on ma20's 256-px slices: 148-192 px in 80 % of them, here 0.8-1.25 x 172)
    keeps the matrix zoom, which is exact for such pictures; any other framing (a crop of the
    lung region, a screenshot, a small picture) is zoomed so that both lungs span LUNG_WIDTH_PX.
    """
    widths = [int(np.ptp(np.nonzero(p)[1])) + 1 for p in lungs if p.any()]
    width = float(np.median(widths))
    matrix = from_geometry(max(lungs.shape[1:]), None)
    if WHOLE_SLICE[0] <= width * matrix.zoom / LUNG_WIDTH_PX <= WHOLE_SLICE[1]:
        return Framing(matrix.zoom, 0, "matrix (a whole slice)")
    zoom = float(np.clip(LUNG_WIDTH_PX / width, *ZOOM_LIMITS))
    return Framing(zoom, 0, "lung extent")
