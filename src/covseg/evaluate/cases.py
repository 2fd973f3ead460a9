"""Scores per case (a patient's scan), not only per slice: what a user of 3-D data reports.

Per case: the abnormal class's 3-D Dice (confusion counts summed over the case's slices), the
lesion volume of reference and prediction and its error in mL, and the mean per-slice Dice over
all its slices and over its lesion slices (where the reference has a lesion). The summary adds
the same per-slice means over every slice of every case and the Dice pooled over all voxels.
Every figure comes from `covseg.metrics`' confusion counts.
"""
from __future__ import annotations

import numpy as np

from covseg.metrics import confusion, scores
from covseg.labels import ABNORMAL


class CaseEvaluation:
    """Accumulates (case, prediction, reference) slices; `rows` per case, `summary` over all."""

    def __init__(self, case_info: dict[str, dict]):
        self.info = case_info
        self.counts: dict[str, np.ndarray] = {}  # tp, fp, fn per case
        self.slice_dice: dict[str, list[float]] = {}
        self.lesion_dice: dict[str, list[float]] = {}

    def add(self, case: str, pred: np.ndarray, truth: np.ndarray) -> None:
        h, w = self.info.get(case, {}).get("plane_shape", truth.shape)
        pred, truth = pred[:h, :w], truth[:h, :w]  # the padding to a common size is not the case's
        tp, fp, fn, tn = confusion(pred, truth, ABNORMAL)
        self.counts.setdefault(case, np.zeros(3, dtype=np.int64))[:] += (tp, fp, fn)
        d = scores(tp, fp, fn, tn)["dice"]
        self.slice_dice.setdefault(case, []).append(d)
        if tp + fn:
            self.lesion_dice.setdefault(case, []).append(d)

    def rows(self) -> list[dict]:
        out = []
        for case, (tp, fp, fn) in self.counts.items():
            info = self.info.get(case, {})
            voxel_ml = info.get("voxel_ml")
            true_ml = None if voxel_ml is None else float(tp + fn) * voxel_ml
            pred_ml = None if voxel_ml is None else float(tp + fp) * voxel_ml
            lesion = self.lesion_dice.get(case, [])
            out.append({"case": case, "patient": info.get("patient", case),
                        "slices": len(self.slice_dice[case]), "lesion_slices": len(lesion),
                        "dice_3d": scores(int(tp), int(fp), int(fn), 0)["dice"],
                        "per_slice_dice": float(np.mean(self.slice_dice[case])),
                        "lesion_slice_dice": float(np.mean(lesion)) if lesion else None,
                        "true_lesion_ml": true_ml, "pred_lesion_ml": pred_ml,
                        "volume_error_ml": None if true_ml is None else pred_ml - true_ml,
                        "lung_source": info.get("lung_source")})
        return out

    def summary(self) -> dict:
        rows = self.rows()
        every = [d for ds in self.slice_dice.values() for d in ds]
        lesion = [d for ds in self.lesion_dice.values() for d in ds]
        tp, fp, fn = (int(v) for v in np.sum(list(self.counts.values()), axis=0))
        errors = [abs(r["volume_error_ml"]) for r in rows if r["volume_error_ml"] is not None]
        return {"cases": len(rows), "slices": len(every), "lesion_slices": len(lesion),
                "mean_case_dice_3d": float(np.mean([r["dice_3d"] for r in rows])),
                "per_slice_dice_all": float(np.mean(every)),
                "per_slice_dice_lesion_slices": float(np.mean(lesion)) if lesion else None,
                "pooled_dice": scores(tp, fp, fn, 0)["dice"],
                "mean_abs_volume_error_ml": float(np.mean(errors)) if errors else None}

    def table(self) -> str:
        s = self.summary()
        vol = s["mean_abs_volume_error_ml"]
        lesion = s["per_slice_dice_lesion_slices"]
        return "\n".join([
            f"abnormal, {s['cases']} cases, {s['slices']} slices ({s['lesion_slices']} with lesions)",
            f"  3-D Dice, mean over cases      {s['mean_case_dice_3d']:.4f}",
            f"  per-slice Dice, all slices     {s['per_slice_dice_all']:.4f}",
            f"  per-slice Dice, lesion slices  {'n/a' if lesion is None else f'{lesion:.4f}'}",
            f"  pooled Dice, all voxels        {s['pooled_dice']:.4f}",
            f"  lesion volume error, mean |mL| {'n/a (no spacing)' if vol is None else f'{vol:.2f}'}"])
