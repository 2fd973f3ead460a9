"""Early stopping on validation patients (the thesis: patience 5), around the training loop.

Epoch after epoch through `train`, each call resuming the checkpoint the last one left; after
each epoch the weights score the validation patients (abnormal Dice pooled over their voxels:
the per-slice mean rewards a model that finds nothing, as most slices have no lesion), the best
are kept, and training stops once `patience` epochs
have passed without a better score. The run folder's model.pt is the best epoch's weights;
early_stopping.json holds every epoch's score, so an interrupted run resumes where it was.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from covseg.data.datasets import load_training_set, load_validation_set
from covseg.train.config import TrainConfig
from covseg.train.trainer import CHECKPOINT, WEIGHTS, train

HISTORY = "early_stopping.json"
BEST = "best.pt"


def validation_dice(cfg: TrainConfig, weights: Path, val) -> float:
    """Pooled abnormal Dice of `weights` on the validation slices, scored as evaluate scores."""
    from covseg.evaluate.metrics import Evaluation
    from covseg.evaluate.run import CLASSES, model_inputs
    from covseg.infer.predictor import LesionSegmenter
    from covseg.infer.postprocess import PostProcess

    segmenter = LesionSegmenter(weights, model=cfg.model, postprocess=PostProcess(), precision="fp32")
    preds = segmenter.predict(model_inputs(val, cfg.data), val.lungs if cfg.data.mask_lungs else None)
    result = Evaluation(CLASSES)
    for sid, pred, truth in zip(val.ids, preds, val.labels):
        result.add(sid, pred, truth)
    return result.pooled()["abnormal"]["dice"]


def _weights(state: dict) -> dict:
    """The weights a checkpoint would ship: its EMA's (AveragedModel keys less 'module.') if any."""
    if not state.get("ema"):
        return state["model"]
    return {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}


def train_early_stopping(cfg: TrainConfig, out_dir: str | Path, resume: bool = False,
                         force: bool = False, progress: bool = True) -> dict:
    """`train` per `cfg` with early stopping after `cfg.patience` epochs; returns the history."""
    out = Path(out_dir)
    val = load_validation_set(cfg.data)
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(load_training_set(cfg.data)) // cfg.batch_size)
    history = json.loads((out / HISTORY).read_text()) if resume and (out / HISTORY).is_file() \
        else {"patience": cfg.patience, "val_dice": [], "best_epoch": None}
    meta = json.dumps({"model": cfg.model, "model_args": cfg.model_args,
                       "trained_on": f"{cfg.name}: best epoch on the validation patients"})
    for epoch in range(len(history["val_dice"]) + 1, cfg.epochs + 1):
        if history["best_epoch"] is not None and epoch - 1 - history["best_epoch"] >= cfg.patience:
            break  # a resumed run that had already stopped
        started = epoch > 1 or resume
        train(cfg, out, resume=started, force=force and not started, progress=progress,
              max_steps=epoch * steps_per_epoch)
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        candidate = out / "epoch.pt"
        torch.save(_weights(state), candidate)
        candidate.with_suffix(".json").write_text(meta)
        score = validation_dice(cfg, candidate, val)
        history["val_dice"].append(score)
        if history["best_epoch"] is None or score > history["val_dice"][history["best_epoch"] - 1]:
            history["best_epoch"] = epoch
            candidate.replace(out / BEST)
        (out / HISTORY).write_text(json.dumps(history, indent=2))
        if epoch - history["best_epoch"] >= cfg.patience:
            break
    shutil.copyfile(out / BEST, out / WEIGHTS)  # the best epoch's, not the last's
    (out / WEIGHTS).with_suffix(".json").write_text(meta)
    (out / "epoch.json").unlink(missing_ok=True)
    return history
