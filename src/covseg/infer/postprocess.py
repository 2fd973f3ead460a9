"""From the network's evidence to abnormal/normal labels inside the lungs.

Two knobs, chosen once per model on held-out data (`covseg tune`) and kept in its metadata:
a decision margin (the network's class weighting sets how eagerly it calls a pixel abnormal,
which need not be the Dice-best point) and a smallest lesion (specks of a few pixels are
mostly noise, and on a slice without lesions one speck costs that slice's whole Dice).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from covseg.errors import InputError
from covseg.labels import ABNORMAL, NORMAL

# in-plane 8-connectivity, nothing across slices: lesions are judged slice by slice
IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = True


@dataclass(frozen=True)
class PostProcess:
    margin: float = 0.0  # abnormal where logit(abnormal) - logit(normal) > margin
    min_lesion_px: int = 0  # abnormal islands smaller than this (per slice, model pixels) -> normal

    @classmethod
    def from_meta(cls, meta: dict) -> PostProcess:
        try:
            return cls(**meta.get("postprocess", {}))
        except TypeError:
            raise InputError(f"the weights' metadata has unknown post-processing settings "
                             f"{meta['postprocess']}; expected {list(asdict(cls()))}") from None

    def as_dict(self) -> dict:
        return asdict(self)

    def abnormal(self, margins: np.ndarray) -> np.ndarray:
        """(N, H, W) abnormal-minus-normal logits -> boolean abnormal mask."""
        mask = margins > self.margin
        if self.min_lesion_px > 1:
            mask = drop_small_islands(mask, self.min_lesion_px)
        return mask

    def labels(self, margins: np.ndarray, lungs: np.ndarray) -> np.ndarray:
        """0 outside the lungs, 1 abnormal, 2 normal lung."""
        out = np.where(lungs, np.uint8(NORMAL), np.uint8(0))  # uint8 throughout: no int64 temporary
        out[self.abnormal(margins) & lungs] = ABNORMAL
        return out


def drop_small_islands(mask: np.ndarray, min_px: int) -> np.ndarray:
    """Remove in-plane connected components of fewer than `min_px` pixels from (N, H, W)."""
    islands, n = ndimage.label(mask, structure=IN_PLANE)
    if n == 0:
        return mask
    keep = np.bincount(islands.ravel()) >= min_px
    keep[0] = False
    return keep[islands]
