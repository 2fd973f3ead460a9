"""Lesions that agree with density, on HU scans: a gate after the model, and what it left out.

Ground glass is lung made denser, consolidation denser still; aerated lung is not a lesion. So
on CT in HU a voxel stays abnormal only where its local density (a ~3 mm in-plane mean, so CT
noise does not decide) is above GATE_HU, the upper edge of well-aerated lung (-950..-700 HU in
Colombi et al., Radiology 2020). Pictures have no HU and are not gated.

The other way round, dense lung the model did not call abnormal is measured, not taken in:
voxels at non-aerated density (>= -100 HU) that survive an in-plane opening with a 3 mm radius
(vessels are thinner; consolidation and effusion are not) are reported in mL with a warning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from covseg.labels import ABNORMAL, NORMAL

GATE_HU = -700.0
SMOOTH_MM = 3.0
DENSE_HU = -100.0
DENSE_RADIUS_MM = 3.0


@dataclass(frozen=True)
class DensityGate:
    """What the gate did, for report.json."""

    removed_voxels: int
    dense_missed_voxels: int

    def as_dict(self, voxel_ml: float) -> dict:
        return {"rule": f"abnormal only where the {SMOOTH_MM:g} mm in-plane mean is above "
                        f"{GATE_HU:g} HU (above well-aerated lung, Colombi et al. 2020)",
                "removed_ml": round(self.removed_voxels * voxel_ml, 2),
                "dense_not_called_abnormal_ml": round(self.dense_missed_voxels * voxel_ml, 2),
                "dense_rule": f">= {DENSE_HU:g} HU regions thicker than {2 * DENSE_RADIUS_MM:g} mm "
                              "inside the lungs that the model called normal: reported, not taken in"}


def _window_px(spacing_mm: float) -> int:
    """An odd window of about SMOOTH_MM; one pixel (no smoothing) on coarse grids."""
    n = max(1, int(round(SMOOTH_MM / spacing_mm)))
    return n + (n % 2 == 0)


def gate_by_density(labels: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float]
                    ) -> DensityGate:
    """Relabel, in place, abnormal voxels at aerated density as normal; count dense misses."""
    size = _window_px(min(spacing[1:]))
    radius_px = DENSE_RADIUS_MM / min(spacing[1:])
    removed = missed = 0
    for z in np.flatnonzero((labels > 0).any(axis=(1, 2))):
        local = ndi.uniform_filter(hu[z], size=size, mode="nearest")
        sick = labels[z] == ABNORMAL
        aerated = sick & (local <= GATE_HU)
        removed += int(aerated.sum())
        labels[z][aerated] = NORMAL
        dense = (labels[z] == NORMAL) & (local >= DENSE_HU)
        if dense.any():
            missed += int(_open_plane(dense, radius_px).sum())
    return DensityGate(removed, missed)


def _open_plane(mask: np.ndarray, radius: float) -> np.ndarray:
    """Opening with a disk by distance transforms: what a disk of `radius` fits inside."""
    core = ndi.distance_transform_edt(mask) > radius
    return (ndi.distance_transform_edt(~core) <= radius) & mask
