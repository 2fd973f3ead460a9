"""What happens around the steps, one concern each: averaged weights, the log, early stop, and
checkpoints that resume exactly.

Order matters and is the trainer's: the average is updated before anything reads it, the
early stop decides before the log and the checkpoint record the decision.
"""
from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from covseg.train.loop import Callback, Run

CHECKPOINT = "last.pt"
WEIGHTS = "model.pt"
LOG = "metrics.jsonl"


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
    a fresh run also says why its precision was chosen (`timed`)."""

    def __init__(self, run: Run, name: str, progress: bool, timed: dict[str, float]) -> None:
        self.path, self.timed = run.out / LOG, timed
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
        if run.ctx.is_main:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def on_end(self, run: Run) -> None:
        self.bar.close()


class EarlyStop(Callback):
    """Stop once the epoch's mean training loss has not fallen by `min_delta` for `patience`
    epochs: a plateau spends CPU hours for nothing. (The training loss, not a validation score:
    the loop holds no validation set.) Its memory is checkpointed, so a resumed run counts on."""

    def __init__(self, patience: int, min_delta: float = 1e-3) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.waited = float("inf"), 0

    def on_epoch(self, run: Run, record: dict) -> None:
        if record["loss"] < self.best - self.min_delta:
            self.best, self.waited = record["loss"], 0
        else:
            self.waited += 1
        if self.waited >= self.patience:
            run.stopped = True
            record["early_stop"] = f"no fall of the loss in {self.waited} epochs"

    def state_dict(self) -> dict:
        return {"best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.waited = state["best"], state["waited"]


class Checkpoint(Callback):
    """last.pt after every epoch and on Ctrl-C (rank 0), and model.pt once the run is complete:
    the averaged weights where there are some. `restore` makes a resumed run continue exactly."""

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
        if run.finished() and run.ctx.is_main:
            final = self.ema.average.module if self.ema is not None else run.model
            torch.save(final.state_dict(), run.out / WEIGHTS)

