"""Lesions that agree with density, on HU scans: a gate after the model, and what it left out.

Ground glass is lung made denser, consolidation denser still; aerated lung is not a lesion. So
on CT in HU a voxel stays abnormal only where its local density (a ~3 mm in-plane mean, so CT
noise does not decide) is above GATE_HU, the upper edge of well-aerated lung (-950..-700 HU in
Colombi et al., Radiology 2020). Pictures have no HU and are not gated.

The other way round, dense lung the model did not call abnormal: voxels at non-aerated density
(>= -100 HU) that survive an in-plane opening with a 3 mm radius (vessels are thinner;
consolidation and effusion are not). Where such a region joins a lesion the model called, it is
that lesion's consolidation (the model often calls only the hazy rim of a dense pleural-based
opacity) and is taken in; on its own it is reported in mL with a warning, not taken in, as it
may be a vessel near the hilum or atelectasis.
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
    dense_taken_voxels: int
    dense_missed_voxels: int

    def as_dict(self, voxel_ml: float) -> dict:
        return {"rule": f"abnormal only where the {SMOOTH_MM:g} mm in-plane mean is above "
                        f"{GATE_HU:g} HU (above well-aerated lung, Colombi et al. 2020)",
                "removed_ml": round(self.removed_voxels * voxel_ml, 2),
                "dense_taken_in_ml": round(self.dense_taken_voxels * voxel_ml, 2),
                "dense_not_called_abnormal_ml": round(self.dense_missed_voxels * voxel_ml, 2),
                "dense_rule": f">= {DENSE_HU:g} HU regions thicker than {2 * DENSE_RADIUS_MM:g} mm "
                              "inside the lungs that the model called normal: taken in as abnormal "
                              "where they join a lesion the model called (consolidation "
                              "continuing it), otherwise reported, not taken in"}


def _window_px(spacing_mm: float) -> int:
    """An odd window of about SMOOTH_MM; one pixel (no smoothing) on coarse grids."""
    n = max(1, int(round(SMOOTH_MM / spacing_mm)))
    return n + (n % 2 == 0)


def gate_by_density(labels: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float]
                    ) -> DensityGate:
    """Relabel, in place, abnormal voxels at aerated density as normal, then dense lung that
    joins a lesion (in its slice or the next one up or down) as abnormal; count the rest."""
    size = _window_px(min(spacing[1:]))
    radius_px = DENSE_RADIUS_MM / min(spacing[1:])
    planes = np.flatnonzero((labels > 0).any(axis=(1, 2)))
    local = {z: ndi.uniform_filter(hu[z], size=size, mode="nearest") for z in planes}
    removed = taken = missed = 0
    for z in planes:
        aerated = (labels[z] == ABNORMAL) & (local[z] <= GATE_HU)
        removed += int(aerated.sum())
        labels[z][aerated] = NORMAL
    called = labels == ABNORMAL  # the gated calls, before any dense lung is joined to them
    for z in planes:
        normal = labels[z] == NORMAL
        dense = normal & (local[z] >= DENSE_HU)
        if dense.any():
            near = called[max(z - 1, 0):z + 2].any(axis=0)
            joined = _thick_and_joining(dense | (normal & (hu[z] >= DENSE_HU)), dense, near,
                                        radius_px, reach=size // 2 + 1)
            labels[z][joined] = ABNORMAL
            taken += int(joined.sum())
            missed += int((_open_plane(dense, radius_px) & ~joined).sum())
    return DensityGate(removed, taken, missed)


def _thick_and_joining(pieces: np.ndarray, core: np.ndarray, sick: np.ndarray, radius: float,
                       reach: int) -> np.ndarray:
    """The parts of `pieces` (8-connected) whose `core` holds a disk of `radius` somewhere and
    that come within `reach` pixels of the abnormal calls (the local mean blurs the edge between
    them). Taken whole, at the voxels' own density: a thin edge of a thick opacity is kept."""
    lab, n = ndi.label(pieces, np.ones((3, 3), bool))
    if n == 0:
        return pieces
    thick = np.zeros(n + 1, bool)
    thick[np.unique(lab[ndi.distance_transform_edt(core) > radius])] = True
    touching = np.zeros(n + 1, bool)
    near = ndi.binary_dilation(sick, np.ones((3, 3), bool), iterations=reach)
    touching[np.unique(lab[near & pieces])] = True
    keep = thick & touching
    keep[0] = False
    return keep[lab]


def _open_plane(mask: np.ndarray, radius: float) -> np.ndarray:
    """Opening with a disk by distance transforms: what a disk of `radius` fits inside."""
    core = ndi.distance_transform_edt(mask) > radius
    return (ndi.distance_transform_edt(~core) <= radius) & mask
