"""Lung masks against ma20's radiologist lung masks (Dice per slice and pooled)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from covseg.data.ma20 import load_ma20
from covseg.evaluate.metrics import Evaluation
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
