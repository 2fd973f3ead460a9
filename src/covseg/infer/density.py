"""Lesions that agree with density, on HU scans: a gate after the model, and what it left out.

Ground glass is lung made denser, consolidation denser still; aerated lung is not a lesion. So
on CT in HU a voxel stays abnormal only where its local density (a ~3 mm in-plane mean, so CT
noise does not decide) is above GATE_HU, the upper edge of well-aerated lung (-950..-700 HU in
Colombi et al., Radiology 2020). Pictures have no HU and are not gated.

The other way round, dense lung the model did not call abnormal: regions at non-aerated density
(>= -100 HU) that hold an in-plane disk of 3 mm radius somewhere (vessels are thinner;
consolidation and effusion are not). Where such a region joins a lesion the model called, it is
that lesion's consolidation (the model often calls only the hazy rim of a dense pleural-based
opacity) and is taken in; on its own it is reported in mL with a warning, not taken in, as it
may be a vessel near the hilum or atelectasis.

Last, a lesion's own edge: lung called normal that touches a lesion (26-connected, one voxel)
and is denser than EDGE_HU is taken in. The model works on a 1.4 mm grid and its labels are
resized back to the scan's voxels, which rounds a lesion's border off by up to a voxel: on
real_ct's 3 mm voxels that was 16 % of a 12 mm ground-glass ball (docs/results.md, the
known-volume table). EDGE_HU is the denser half of ground glass, not aerated lung's dependent
haze: at -700 HU (the gate) the ring took in 6.45 mL around real_ct's 4.62 mL of calls, at
-500 HU 2.10 mL.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from covseg.labels import ABNORMAL, NORMAL
from covseg.lungs.box import mask_box

GATE_HU = -700.0
SMOOTH_MM = 3.0
DENSE_HU = -100.0
DENSE_RADIUS_MM = 3.0
EDGE_HU = -500.0


@dataclass(frozen=True)
class DensityGate:
    """What the gate did, for report.json."""

    removed_voxels: int
    dense_taken_voxels: int
    dense_missed_voxels: int
    edge_taken_voxels: int

    def as_dict(self, voxel_ml: float) -> dict:
        return {"rule": f"abnormal only where the {SMOOTH_MM:g} mm in-plane mean is above "
                        f"{GATE_HU:g} HU (above well-aerated lung, Colombi et al. 2020)",
                "removed_ml": round(self.removed_voxels * voxel_ml, 2),
                "dense_taken_in_ml": round(self.dense_taken_voxels * voxel_ml, 2),
                "dense_not_called_abnormal_ml": round(self.dense_missed_voxels * voxel_ml, 2),
                "dense_rule": f">= {DENSE_HU:g} HU regions thicker than {2 * DENSE_RADIUS_MM:g} mm "
                              "inside the lungs that the model called normal: taken in as abnormal "
                              "where they join a lesion the model called (consolidation "
                              "continuing it), otherwise reported, not taken in",
                "edge_taken_in_ml": round(self.edge_taken_voxels * voxel_ml, 2),
                "edge_rule": f"lung called normal that touches a lesion (one voxel) and is above "
                             f"{EDGE_HU:g} HU: the lesion's edge, taken in"}


def _window_px(spacing_mm: float) -> int:
    """An odd window of about SMOOTH_MM; one pixel (no smoothing) on coarse grids."""
    n = max(1, int(round(SMOOTH_MM / spacing_mm)))
    return n + (n % 2 == 0)


def gate_by_density(labels: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float]
                    ) -> DensityGate:
    """Relabel, in place, abnormal voxels at aerated density as normal, then dense lung that
    joins a lesion (in its slice or the next one up or down) as abnormal, count the rest, and
    take in the lesions' dense edge.

    Worked on the lungs' bounding box, grown by the mean's half window so every mean is the
    full-slice one, one slice at a time (no box-sized temporaries: at 600 slices of 512 x 512 the
    box's float means alone were 275 MB); slices without a dense region thick enough are skipped
    by a square test.
    """
    size = _window_px(min(spacing[1:]))
    radius_px = DENSE_RADIUS_MM / min(spacing[1:])
    box = mask_box(labels, size // 2 + 1)
    if box is None:
        return DensityGate(0, 0, 0, 0)
    lab = labels[box]  # a view: relabelling it relabels `labels`
    h = hu[box]
    # a disk of radius r holds a square of half-side r / sqrt(2): no such square, no thick part
    side = 2 * int(radius_px / np.sqrt(2)) + 1
    square = np.ones((side, side), np.uint8)

    removed, holds = 0, {}  # slice -> its dense lung, where a thick part may lie
    for z in range(lab.shape[0]):
        local = cv2.blur(np.ascontiguousarray(h[z], dtype=np.float32), (size, size),
                         borderType=cv2.BORDER_REPLICATE)
        aerated = (lab[z] == ABNORMAL) & (local <= GATE_HU)
        lab[z][aerated] = NORMAL
        removed += int(np.count_nonzero(aerated))
        dense = (lab[z] == NORMAL) & (local >= DENSE_HU)
        if cv2.erode(dense.view(np.uint8), square).any():
            holds[z] = dense
    # the gated calls near each such slice, before any dense lung is joined to them
    near = {z: (lab[max(z - 1, 0):z + 2] == ABNORMAL).any(axis=0) for z in holds}
    taken = missed = 0
    for z, dense in holds.items():  # a slice is relabelled only in its own turn: `dense` holds
        normal = lab[z] == NORMAL
        pieces = _thick_pieces(dense | (normal & (h[z] >= DENSE_HU)), dense, radius_px)
        joined = _joining(pieces, near[z], reach=size // 2 + 1)
        lab[z][joined] = ABNORMAL
        taken += int(joined.sum())
        missed += int(np.count_nonzero(pieces) - joined.sum())
    return DensityGate(removed, taken, missed, _take_edge(lab, h))


def _take_edge(lab: np.ndarray, h: np.ndarray) -> int:
    """Relabel as abnormal, in place, lung voxels called normal that touch a lesion
    (26-connected) and are above EDGE_HU: the lesion's own edge, which the model's coarser
    grid rounds off when its labels return to the scan's voxels. Returns how many.

    Slice by slice: each slice's lesions are dilated in-plane once, before that slice or its
    neighbours are relabelled, and a slice's edge is what its own and its neighbours' reach.
    """
    square = np.ones((3, 3), np.uint8)

    def reach(z: int) -> np.ndarray | None:
        if z >= lab.shape[0]:
            return None
        sick = (lab[z] == ABNORMAL).view(np.uint8)
        return cv2.dilate(sick, square) if sick.any() else None

    taken = 0
    below, here, above = None, reach(0), reach(1)
    for z in range(lab.shape[0]):
        grown = [r for r in (below, here, above) if r is not None]
        if grown:
            near = np.bitwise_or.reduce(grown) if len(grown) > 1 else grown[0]
            edge = near.view(bool) & (lab[z] == NORMAL) & (h[z] > EDGE_HU)
            lab[z][edge] = ABNORMAL
            taken += int(np.count_nonzero(edge))
        below, here, above = here, above, reach(z + 2)
    return taken


def _thick_pieces(pieces: np.ndarray, core: np.ndarray, radius: float) -> np.ndarray:
    """(8-connected piece labels, 0 none) of the parts of `pieces` whose `core` holds a disk
    of `radius` somewhere: whole, at the voxels' own density, so a thin edge of a thick opacity
    is kept."""
    lab, n = ndi.label(pieces, np.ones((3, 3), bool))
    if n == 0:
        return lab
    thick = np.zeros(n + 1, bool)
    thick[np.unique(lab[ndi.distance_transform_edt(core) > radius])] = True
    thick[0] = False
    return np.where(thick[lab], lab, 0)


def _joining(pieces: np.ndarray, sick: np.ndarray, reach: int) -> np.ndarray:
    """The pieces that come within `reach` pixels of the abnormal calls (the local mean blurs
    the edge between them)."""
    if not pieces.any() or not sick.any():
        return np.zeros(pieces.shape, bool)
    near = ndi.binary_dilation(sick, np.ones((3, 3), bool), iterations=reach)
    return np.isin(pieces, np.unique(pieces[near & (pieces > 0)]))
