"""Per-case figures against values computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from covseg.evaluate.cases import CaseEvaluation


def _slice(pred_px: int, truth_px: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """A 10x10 slice (inside a 12x12 padded frame) with the given abnormal pixel counts."""
    pred, truth = np.full((12, 12), 2, np.uint8), np.full((12, 12), 2, np.uint8)
    flat_p, flat_t = pred[:10, :10].reshape(-1), truth[:10, :10].reshape(-1)
    flat_t[:truth_px] = 1
    flat_p[truth_px - overlap:truth_px - overlap + pred_px] = 1
    pred[:10, :10], truth[:10, :10] = flat_p.reshape(10, 10), flat_t.reshape(10, 10)
    pred[10:, :] = 1  # in the padding: must not count
    return pred, truth


def test_case_figures_by_hand():
    info = {"a": {"voxel_ml": 0.5, "plane_shape": [10, 10], "patient": "pa", "lung_source": "mask"},
            "b": {"voxel_ml": 2.0, "plane_shape": [10, 10], "patient": "pb", "lung_source": "mask"}}
    ev = CaseEvaluation(info)
    ev.add("a", *_slice(pred_px=4, truth_px=6, overlap=2))  # Dice 2*2/(4+6) = 0.4
    ev.add("a", *_slice(pred_px=0, truth_px=0, overlap=0))  # both empty: 1
    ev.add("a", *_slice(pred_px=3, truth_px=0, overlap=0))  # false positive only: 0
    ev.add("b", *_slice(pred_px=5, truth_px=5, overlap=5))  # 1
    rows = {r["case"]: r for r in ev.rows()}
    a, b = rows["a"], rows["b"]
    # case a: tp 2, fp 2 + 3, fn 4 -> 3-D Dice 4 / (4 + 5 + 4)
    assert a["dice_3d"] == pytest.approx(4 / 13)
    assert a["per_slice_dice"] == pytest.approx((0.4 + 1 + 0) / 3)
    assert a["lesion_slice_dice"] == pytest.approx(0.4) and a["lesion_slices"] == 1
    assert a["true_lesion_ml"] == pytest.approx(6 * 0.5) and a["pred_lesion_ml"] == pytest.approx(7 * 0.5)
    assert a["volume_error_ml"] == pytest.approx(0.5)
    assert b["dice_3d"] == 1.0 and b["volume_error_ml"] == 0.0
    s = ev.summary()
    assert s["mean_case_dice_3d"] == pytest.approx((4 / 13 + 1) / 2)
    assert s["per_slice_dice_all"] == pytest.approx((0.4 + 1 + 0 + 1) / 4)
    assert s["per_slice_dice_lesion_slices"] == pytest.approx((0.4 + 1) / 2)
    # pooled over every voxel: tp 2 + 5, fp 5, fn 4
    assert s["pooled_dice"] == pytest.approx(14 / (14 + 5 + 4))
    assert s["mean_abs_volume_error_ml"] == pytest.approx(0.25)
    assert "3-D Dice" in ev.table()


def test_pictures_without_spacing_have_no_volumes():
    ev = CaseEvaluation({"p": {"voxel_ml": None}})
    ev.add("p", *_slice(pred_px=2, truth_px=2, overlap=1))
    row = ev.rows()[0]
    assert row["true_lesion_ml"] is None and row["volume_error_ml"] is None
    assert ev.summary()["mean_abs_volume_error_ml"] is None
