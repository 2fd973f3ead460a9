"""The bounding box of a mask's nonzero voxels: where the lung-box stages (the HU bridge, the
density gate, the density figures) confine their work."""
from __future__ import annotations

import numpy as np


def mask_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice, slice] | None:
    """(z, y, x) slices of `mask`'s nonzero voxels, grown in-plane by `margin` (within the
    array); None for an empty mask. Reductions only, no mask-sized temporary."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    ys, xs = np.nonzero(mask[zs[0]:zs[-1] + 1].any(axis=0))
    h, w = mask.shape[1:]
    return (slice(zs[0], zs[-1] + 1), slice(max(ys.min() - margin, 0), min(ys.max() + margin + 1, h)),
            slice(max(xs.min() - margin, 0), min(xs.max() + margin + 1, w)))
