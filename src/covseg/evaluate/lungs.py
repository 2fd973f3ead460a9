"""Lung masks against ma20's radiologist lung masks (Dice per slice and pooled)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from covseg.data.ma20 import load_ma20
from covseg import metrics
from covseg.metrics import Evaluation
from covseg.lungs import extract_lungs


def evaluate_lungs(method: str = "model", folds: list[int] | None = None,
                   data_root: str | Path | None = None, limit: int | None = None) -> Evaluation:
    """Score a lung method ('model' or 'intensity'; ma20 has no HU) on ma20 folds (default 4)."""
    data = load_ma20(folds=folds or [4], data_root=data_root, limit=limit)
    found = extract_lungs(data.images.astype(np.float32), (1.0, 1.0, 1.0), data.intensity, method)
    result = Evaluation({1: "lung"})
    for sid, pred, truth in zip(data.ids, found > 0, data.lungs):
        result.add(sid, pred.astype(np.uint8), truth.astype(np.uint8))
    return result


LOBES = (10, 11, 12, 13, 14)  # TotalSegmentator: left upper/lower, right upper/middle/lower


def evaluate_hu_lungs(data_root: str | Path | None = None) -> dict[str, float]:
    """The HU method on real_ct/example_ct.nii.gz against TotalSegmentator's lung lobes.

    example_seg.nii.gz holds 30 slices under the CT's affine; they match the CT's top 30 slices
    (the lung bases at the top of this abdominal scan): at every other offset the lobes overlap
    our lungs with Dice < 0.5, at this one 0.95. Scored there, and per side (labels 10-11 left,
    12-14 right).
    """
    import nibabel as nib

    from covseg.data.root import require_dataset
    from covseg.io import read_scan
    from covseg.lungs import extract_lungs_hu

    root = require_dataset("real_ct", data_root)
    scan = read_scan(root / "example_ct.nii.gz")
    found = extract_lungs_hu(scan.array, scan.spacing)
    seg = np.asarray(nib.load(root / "example_seg.nii.gz").dataobj)
    ref = np.transpose(seg[::-1, ::-1, :], (2, 1, 0))  # RAS file order -> covseg's (z, y, x) LPS
    ours = found[-ref.shape[0]:]

    def dice(a: np.ndarray, b: np.ndarray) -> float:  # of two masks, by the one metric code
        return metrics.dice(a, b, True)

    return {"lungs": dice(ours > 0, np.isin(ref, LOBES)),
            "right": dice(ours == 1, np.isin(ref, (12, 13, 14))),
            "left": dice(ours == 2, np.isin(ref, (10, 11))),
            "outside_reference_slices_voxels": float((found[:-ref.shape[0]] > 0).sum())}
