"""`covseg evaluate`: run a model over a test set and score it slice by slice, and per case
where the test slices come from a user's volumes (covseg.evaluate.cases)."""
from __future__ import annotations

import copy
import json
from pathlib import Path


from covseg.data.datasets import load_test_set, model_inputs
from covseg.data.layouts import LAYOUTS
from covseg.errors import InputError
from covseg.evaluate.cases import CaseEvaluation
from covseg.metrics import Evaluation
from covseg.infer.predictor import LesionSegmenter
from covseg.io.writers import check_writable, write_csv
from covseg.train.config import DataConfig, load_config

CLASSES = {1: "abnormal", 2: "normal"}


def evaluate_model(weights: str | Path | list[str | Path] | None = None,
                   config: str | Path | None = None, dataset: str | None = None,
                   folds: list[int] | None = None, csv_path: str | Path | None = None,
                   limit: int | None = None, force: bool = False,
                   segmenter: LesionSegmenter | None = None,
                   cases_path: str | Path | None = None,
                   data: DataConfig | None = None) -> Evaluation:
    """Score `weights` (default: the shipped model; several: their ensemble) on the config's test
    data (default: ma20 F4); `data` names the test data directly, for callers that build it.
    Slices of a user's volumes are also scored per case (`result.per_case`); `cases_path`
    writes those rows as CSV and the summary beside it (.json)."""
    for path in (csv_path, cases_path):
        if path is not None:
            check_writable(path, force)
    data = copy.deepcopy(data) if data else load_config(config).data if config else DataConfig()
    if dataset:
        data.dataset = dataset
    if folds:
        if data.dataset in LAYOUTS:
            raise InputError("--folds picks ma20 folds; a user's data set is split by its config's "
                             "data.split")
        data.test_folds = folds
    if cases_path is not None and data.dataset not in LAYOUTS:
        raise InputError("per-case figures need a test set of a user's volumes (data.dataset: "
                         f"{', '.join(LAYOUTS)})")
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
    if test.cases is not None:
        result.per_case = CaseEvaluation(test.case_info)
        for case, pred, truth in zip(test.cases, preds, test.labels):
            result.per_case.add(case, pred, truth)
    if cases_path is not None:
        _write_cases(result.per_case, Path(cases_path), force)
    return result


def _write_cases(per_case: CaseEvaluation, path: Path, force: bool) -> None:
    """Per-case rows as CSV, the summary as JSON beside them."""
    from covseg.io import atomic_write

    rows = per_case.rows()
    write_csv(path, rows, list(rows[0]), force)
    summary = json.dumps(per_case.summary(), indent=2)
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(summary), force)
