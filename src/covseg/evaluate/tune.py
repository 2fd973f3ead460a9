"""`covseg tune`: choose a model's post-processing on held-out slices, never on its test fold.

Each run named by a training config contributes its model's evidence on that config's test
folds; for ma20's 3-fold rotation inside folds 1-3 these are out-of-fold predictions, so the
chosen margin and smallest lesion are fair to carry to the shipped model's fold-4 test.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from covseg.data.datasets import load_test_set, model_inputs
from covseg.metrics import dice_from_counts
from covseg.infer.postprocess import IN_PLANE, PostProcess
from covseg.infer.predictor import LesionSegmenter
from covseg.labels import ABNORMAL
from covseg.train.config import load_config

MARGINS = tuple(np.round(np.arange(-4.0, 2.01, 0.25), 2))
MIN_LESION_PX = (0, 10, 25, 50, 100)


@dataclass
class Candidate:
    postprocess: PostProcess
    per_slice_dice: float
    pooled_dice: float


def held_out_evidence(configs: list[str | Path],
                      runs_dir: str | Path = "runs") -> tuple[np.ndarray, np.ndarray]:
    """(margins, truth abnormal) over every config's test slices, from runs/NAME/model.pt.

    Margins are -inf outside the lungs, so they also carry the lung masks.
    """
    margins, truth = [], []
    for path in configs:
        cfg = load_config(path)
        test = load_test_set(cfg.data)
        segmenter = LesionSegmenter(Path(runs_dir) / cfg.name / "model.pt", model=cfg.model)
        margins.append(segmenter.margins(model_inputs(test, cfg.data), test.lungs).astype(np.float16))
        truth.append(test.labels == ABNORMAL)
    return np.concatenate(margins), np.concatenate(truth)


def grid_search(margins: np.ndarray, truth: np.ndarray) -> list[Candidate]:
    """Abnormal Dice (mean per slice, pooled) for every margin x smallest-lesion pair.

    Components are labelled once per margin; each minimum size then only re-sums their pixel
    and overlap counts per slice.
    """
    n = len(margins)
    true_px = truth.reshape(n, -1).sum(axis=1)
    out = []
    for margin in MARGINS:
        islands, count = ndimage.label(margins > margin, structure=IN_PLANE)
        size = np.bincount(islands.ravel(), minlength=count + 1)
        overlap = np.bincount(islands[truth], minlength=count + 1)
        first = ndimage.find_objects(islands)
        where = np.array([0] + [s[0].start for s in first])  # each island's slice
        for min_px in MIN_LESION_PX:
            keep = size >= min_px
            keep[0] = False
            pred_px = np.bincount(where[keep], weights=size[keep], minlength=n)
            inter = np.bincount(where[keep], weights=overlap[keep], minlength=n)
            per_slice = float(dice_from_counts(inter, pred_px, true_px).mean())
            pooled = float(dice_from_counts(inter.sum(), pred_px.sum(), true_px.sum()))
            out.append(Candidate(PostProcess(float(margin), min_px), per_slice, pooled))
    return out


def tune_postprocess(configs: list[str | Path], runs_dir: str | Path = "runs") -> list[Candidate]:
    """All candidates, best mean per-slice abnormal Dice first (the paper's headline figure)."""
    candidates = grid_search(*held_out_evidence(configs, runs_dir))
    return sorted(candidates, key=lambda c: c.per_slice_dice, reverse=True)
