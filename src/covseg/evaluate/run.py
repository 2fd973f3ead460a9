"""`covseg evaluate`: run a model over a test set and score it slice by slice."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from covseg.data.datasets import load_test_set
from covseg.data.ma20 import SliceSet
from covseg.evaluate.metrics import Evaluation
from covseg.infer.predictor import LesionSegmenter
from covseg.infer.preprocess import model_input
from covseg.io.writers import check_writable, write_csv
from covseg.train.config import DataConfig, load_config

CLASSES = {1: "abnormal", 2: "normal"}


def model_inputs(test: SliceSet, data: DataConfig) -> np.ndarray:
    """The network's inputs for a test set, prepared exactly as inference prepares scans."""
    return np.stack([model_input(im, lu, test.intensity, data.mask_lungs)
                     for im, lu in zip(test.images, test.lungs)])


def evaluate_model(weights: str | Path | list[str | Path] | None = None,
                   config: str | Path | None = None, dataset: str | None = None,
                   folds: list[int] | None = None, csv_path: str | Path | None = None,
                   limit: int | None = None, force: bool = False,
                   segmenter: LesionSegmenter | None = None,
                   data: DataConfig | None = None) -> Evaluation:
    """Score `weights` (default: the shipped model; several: their ensemble) on the config's test
    data (default: ma20 F4); `data` names the test data directly, for callers that build it."""
    if csv_path is not None:
        check_writable(csv_path, force)
    data = copy.deepcopy(data) if data else load_config(config).data if config else DataConfig()
    if dataset:
        data.dataset = dataset
    if folds:
        data.test_folds = folds
    test = load_test_set(data)
    if limit:
        test = test.spread(limit)
    segmenter = segmenter or LesionSegmenter(weights)
    preds = segmenter.predict(model_inputs(test, data), test.lungs if data.mask_lungs else None)
    result = Evaluation(CLASSES)
    for sid, pred, truth in zip(test.ids, preds, test.labels):
        result.add(sid, pred, truth)
    if csv_path is not None:
        write_csv(csv_path, result.rows, list(result.rows[0]), force)
    return result
