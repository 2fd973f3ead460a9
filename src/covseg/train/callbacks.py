"""What happens around the steps, one concern each: averaged weights, early stopping on
validation patients, the log, and checkpoints that resume exactly.

Order matters and is the trainer's: the average is updated before anything reads it, the
early stop decides before the log and the checkpoint record the decision.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from covseg.runtime import machine_description
from covseg.train import distributed as ddp
from covseg.train.loop import Callback, Run

CHECKPOINT = "last.pt"
WEIGHTS = "model.pt"
LOG = "metrics.jsonl"
BEST = "best.pt"


class Ema(Callback):
    """An exponential moving average of the weights (and BatchNorm statistics), which is what a
    run with `ema` ships: averaged weights generalise better on small data sets."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
                                     use_buffers=True)

    def on_step(self, run: Run) -> None:
        self.average.update_parameters(run.model)


class MetricsLog(Callback):
    """The progress bar, and one JSON line an epoch in metrics.jsonl (rank 0). The first line of
    a fresh run also says why its precision was chosen (`timed`); every line says on which
    machine the epoch ran, since a resumed run may go on elsewhere (a GPU, another CPU)."""

    def __init__(self, run: Run, name: str, progress: bool, timed: dict[str, float]) -> None:
        self.path, self.timed, self.machine = run.out / LOG, timed, machine_description()
        self.bar = tqdm(total=run.total_steps, initial=run.step, unit="step", desc=name,
                        disable=not (progress and run.ctx.is_main), dynamic_ncols=True)

    def on_step(self, run: Run) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{np.mean(run.losses[-20:]):.3f}",
                             dice1=f"{np.mean(run.dices[-20:]):.3f}")

    def on_epoch(self, run: Run, record: dict) -> None:
        if self.timed:
            record["precision_timing_s"] = {k: round(v, 4) for k, v in self.timed.items()}
            self.timed = {}
        record["machine"] = self.machine
        if run.ctx.is_main:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def on_end(self, run: Run) -> None:
        self.bar.close()


class EarlyStop(Callback):
    """Score the weights that would ship on the validation patients after every epoch (abnormal
    Dice pooled over their voxels: a per-slice mean rewards finding nothing, as most slices have
    no lesion), keep the best epoch's in best.pt, and stop once `patience` epochs have passed
    without a better score (the thesis: 5). The run then ships the best epoch's weights."""

    def __init__(self, run: Run, patience: int, val, data, model: dict, ema: Ema | None) -> None:
        self.patience, self.val, self.data, self.ema = patience, val, data, ema
        self.best_path, self.sidecar = run.out / BEST, json.dumps(model)
        self.best, self.best_epoch, self.waited = -1.0, 0, 0

    def score(self, run: Run) -> float:
        """Pooled abnormal Dice of the shipping weights, run as `covseg evaluate` runs them."""
        from covseg.data.datasets import model_inputs
        from covseg.infer import LesionSegmenter, PostProcess
        from covseg.labels import ABNORMAL
        from covseg.metrics import dice

        candidate = run.out / "epoch.pt"
        torch.save(shipping(run, self.ema).state_dict(), candidate)
        candidate.with_suffix(".json").write_text(self.sidecar)
        try:
            segmenter = LesionSegmenter(candidate, postprocess=PostProcess(), backend="torch",
                                        precision="fp32")
            lungs = self.val.lungs if self.data.mask_lungs else None
            preds = segmenter.predict(model_inputs(self.val, self.data), lungs)
        finally:
            candidate.unlink(missing_ok=True)
            candidate.with_suffix(".json").unlink(missing_ok=True)
        return dice(preds, self.val.labels, ABNORMAL)

    def on_epoch(self, run: Run, record: dict) -> None:
        if run.step % run.steps_per_epoch:  # a call cut mid-epoch (max_steps): not an epoch yet
            return
        epoch = run.step // run.steps_per_epoch
        score = self.score(run) if run.ctx.is_main else 0.0
        score = ddp.broadcast(run.ctx, score)  # every rank stops at the same step
        record["val_dice_abnormal"] = round(score, 6)
        if score > self.best:
            self.best, self.best_epoch, self.waited = score, epoch, 0
            if run.ctx.is_main:
                torch.save(shipping(run, self.ema).state_dict(), self.best_path)
        else:
            self.waited += 1
        record["best_epoch"] = self.best_epoch
        if self.waited >= self.patience:
            run.stopped = True
            record["early_stop"] = (f"no better validation Dice in {self.waited} epochs; the "
                                    f"weights of epoch {self.best_epoch} ship")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "waited": self.waited}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.waited = state["best"], state["best_epoch"], state["waited"]


def shipping(run: Run, ema: Ema | None) -> nn.Module:
    """The network a complete run would ship now: the average where there is one."""
    return ema.average.module if ema is not None else run.model


class Checkpoint(Callback):
    """last.pt after every epoch and on Ctrl-C (rank 0), and model.pt once the run is complete:
    the best epoch's weights under early stopping, else the averaged weights where there are
    some, else the last. `restore` makes a resumed run continue exactly."""

    def __init__(self, run: Run, config: dict, ema: Ema | None, early: EarlyStop | None) -> None:
        self.path, self.config, self.ema, self.early = run.out / CHECKPOINT, config, ema, early

    def restore(self, run: Run) -> None:
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        run.model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        run.step, run.elapsed_s = state["step"], state["elapsed_s"]
        run.precision = state.get("precision", "fp32")  # a resumed run keeps its arithmetic
        run.stopped = state.get("stopped", False)
        if self.ema is not None:
            self.ema.average.load_state_dict(state["ema"])
        if self.early is not None and state.get("early_stop"):
            self.early.load_state_dict(state["early_stop"])

    def save(self, run: Run) -> None:
        if not run.ctx.is_main:
            return
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
                    "scheduler": run.sched.state_dict(), "step": run.step,
                    "elapsed_s": run.elapsed(), "precision": run.precision,
                    "config": self.config, "stopped": run.stopped,
                    "ema": self.ema.average.state_dict() if self.ema is not None else None,
                    "early_stop": self.early.state_dict() if self.early is not None else None},
                   tmp)
        tmp.replace(self.path)

    def on_epoch(self, run: Run, record: dict) -> None:
        self.save(run)

    def on_interrupt(self, run: Run) -> None:
        self.save(run)

    def on_end(self, run: Run) -> None:
        if not (run.finished() and run.ctx.is_main):
            return
        if self.early is not None:  # the best epoch's weights, not the last's
            shutil.copyfile(self.early.best_path, run.out / WEIGHTS)
        else:
            torch.save(shipping(run, self.ema).state_dict(), run.out / WEIGHTS)

