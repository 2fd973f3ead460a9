"""Segmentation metrics as the Anam-Net paper reports them, per class, one-vs-rest.

`per_slice` gives one row a slice (the paper's "averaged over all images": Dice is 1 when truth and
prediction are both empty); `pooled` sums the confusion counts over every pixel first.
"""
from __future__ import annotations

import numpy as np

METRICS = ("sensitivity", "specificity", "accuracy", "dice")


def confusion(pred: np.ndarray, truth: np.ndarray, cls: int) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of class `cls` against the rest."""
    p, t = pred == cls, truth == cls
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return tp, fp, fn, int(p.size) - tp - fp - fn


def scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """The four figures from confusion counts; an empty denominator means nothing to miss -> 1."""
    def ratio(num: int, den: int) -> float:
        return 1.0 if den == 0 else num / den
    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
    }


def dice_from_counts(inter: np.ndarray, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Dice from overlap and mask sizes, elementwise; 1 where both masks are empty (as `scores`)."""
    total = pred + true
    return np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))


def dice(pred: np.ndarray, truth: np.ndarray, cls: int) -> float:
    return scores(*confusion(pred, truth, cls))["dice"]


class Evaluation:
    """Accumulates slices, then reports per-slice means and pooled figures per class."""

    def __init__(self, classes: dict[int, str]):
        self.classes = classes
        self.rows: list[dict] = []
        self.per_case = None  # CaseEvaluation, where the slices come from a user's volumes
        self.totals = {c: np.zeros(4, dtype=np.int64) for c in classes}

    def add(self, slice_id: str, pred: np.ndarray, truth: np.ndarray) -> dict:
        row: dict = {"slice": slice_id}
        for cls, name in self.classes.items():
            counts = confusion(pred, truth, cls)
            self.totals[cls] += counts
            for key, value in scores(*counts).items():
                row[f"{name}_{key}"] = value
        self.rows.append(row)
        return row

    def mean_per_slice(self) -> dict[str, dict[str, float]]:
        return {name: {m: float(np.mean([r[f"{name}_{m}"] for r in self.rows])) for m in METRICS}
                for name in self.classes.values()}

    def pooled(self) -> dict[str, dict[str, float]]:
        return {name: scores(*map(int, self.totals[cls])) for cls, name in self.classes.items()}

    def table(self) -> str:
        """The paper's layout: one row per class, sensitivity / specificity / accuracy / Dice."""
        lines = [f"{'class':<10}{'averaging':<11}" + "".join(f"{m:>13}" for m in METRICS)]
        for label, res in (("per-slice", self.mean_per_slice()), ("pooled", self.pooled())):
            for name, vals in res.items():
                lines.append(f"{name:<10}{label:<11}" + "".join(f"{vals[m]:>13.4f}" for m in METRICS))
        return "\n".join(lines)
