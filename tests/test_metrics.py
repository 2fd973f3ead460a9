"""The paper's metrics, on hand-made cases whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from covseg.metrics import Evaluation, confusion, scores


def test_confusion_counts():
    truth = np.array([[1, 1, 2, 0]])
    pred = np.array([[1, 2, 2, 1]])
    assert confusion(pred, truth, 1) == (1, 1, 1, 1)
    s = scores(*confusion(pred, truth, 1))
    assert s == {"sensitivity": 0.5, "specificity": 0.5, "accuracy": 0.5, "dice": 0.5}


def test_both_empty_counts_as_perfect_per_slice_but_not_in_pooled():
    ev = Evaluation({1: "abnormal"})
    ev.add("a", np.zeros((4, 4), int), np.zeros((4, 4), int))  # nothing to find, nothing found
    truth = np.zeros((4, 4), int)
    truth[0, :2] = 1
    ev.add("b", np.zeros((4, 4), int), truth)  # missed everything
    assert ev.mean_per_slice()["abnormal"]["dice"] == pytest.approx(0.5)
    assert ev.pooled()["abnormal"]["dice"] == 0.0
    assert "per-slice" in ev.table() and "pooled" in ev.table()
