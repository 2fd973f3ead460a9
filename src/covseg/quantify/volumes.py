"""Lung and lesion volumes and involvement, from label maps and voxel spacing."""
from __future__ import annotations

import numpy as np

from covseg.labels import ABNORMAL, LEFT, RIGHT
from covseg.quantify.severity import severity


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def slice_counts(labels: np.ndarray, lung_sides: np.ndarray) -> np.ndarray:
    """(z, 3, 3) voxel counts of every (label, lung side) pair inside the lungs, slice by slice.

    One small table instead of full-volume boolean masks: constant memory for any scan length,
    and only lung voxels are counted. Column 0 (outside the lungs) stays zero.
    """
    counts = np.zeros((labels.shape[0], 3, 3), dtype=np.int64)
    for z in np.flatnonzero(lung_sides.any(axis=(1, 2))):
        inside = np.flatnonzero(lung_sides[z])
        pair = labels[z].ravel()[inside] * np.uint8(3) + lung_sides[z].ravel()[inside]
        counts[z] = np.bincount(pair, minlength=9)[:9].reshape(3, 3)
    return counts


def quantify(labels: np.ndarray, lung_sides: np.ndarray, voxel_ml: float) -> dict:
    """Numbers for report.json.

    `labels`: (z, y, x) 0 background / 1 abnormal / 2 normal lung; `lung_sides`: 0 / 1 right /
    2 left; `voxel_ml`: one voxel's volume in mL (1e-3 x the product of the spacing in mm).
    """
    counts = slice_counts(labels, lung_sides)  # [z, label, side]
    lesion_z = counts[:, ABNORMAL].sum(axis=1)
    lung_z = counts[:, 1:].sum(axis=(1, 2))
    per_lung = {}
    for name, side in (("right", RIGHT), ("left", LEFT)):
        n_lung, n_lesion = int(counts[:, 1:, side].sum()), int(counts[:, ABNORMAL, side].sum())
        per_lung[name] = {"lung_ml": round(n_lung * voxel_ml, 2),
                          "lesion_ml": round(n_lesion * voxel_ml, 2),
                          "involvement_percent": round(_percent(n_lesion, n_lung), 2)}
    n_lesion, n_lung = int(lesion_z.sum()), int(lung_z.sum())
    total = _percent(n_lesion, n_lung)
    return {
        "lung_ml": round(n_lung * voxel_ml, 2),
        "lesion_ml": round(n_lesion * voxel_ml, 2),
        "involvement_percent": round(total, 2),
        "severity": severity(total),
        "lungs": per_lung,
        "per_slice_involvement_percent": [round(_percent(int(a), int(b)), 2)
                                          for a, b in zip(lesion_z, lung_z)],
    }
