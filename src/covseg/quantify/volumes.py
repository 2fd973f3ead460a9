"""Lung and lesion volumes and involvement, from label maps and voxel spacing."""
from __future__ import annotations

import numpy as np

from covseg.lungs.threshold import LEFT, RIGHT
from covseg.quantify.severity import grade_description, severity_grade

ABNORMAL = 1


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def quantify(labels: np.ndarray, lung_sides: np.ndarray, voxel_ml: float) -> dict:
    """Numbers for report.json.

    `labels`: (z, y, x) 0 background / 1 abnormal / 2 normal lung; `lung_sides`: 0 / 1 right /
    2 left; `voxel_ml`: one voxel's volume in mL (1e-3 x the product of the spacing in mm).
    """
    lesion = labels == ABNORMAL
    lung = labels > 0
    per_lung = {}
    for name, side in (("right", RIGHT), ("left", LEFT)):
        in_side = lung & (lung_sides == side)
        n_lung, n_lesion = int(in_side.sum()), int((lesion & in_side).sum())
        per_lung[name] = {"lung_ml": round(n_lung * voxel_ml, 2),
                          "lesion_ml": round(n_lesion * voxel_ml, 2),
                          "involvement_percent": round(_percent(n_lesion, n_lung), 2)}
    total = _percent(int(lesion.sum()), int(lung.sum()))
    grade = severity_grade(total)
    per_slice = [round(_percent(int(lesion[z].sum()), int(lung[z].sum())), 2)
                 for z in range(labels.shape[0])]
    return {
        "lung_ml": round(float(lung.sum()) * voxel_ml, 2),
        "lesion_ml": round(float(lesion.sum()) * voxel_ml, 2),
        "involvement_percent": round(total, 2),
        "severity": {"grade": grade, "meaning": grade_description(grade)},
        "lungs": per_lung,
        "per_slice_involvement_percent": per_slice,
    }
