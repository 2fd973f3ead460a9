"""The step loop and the state it moves: one optimiser step at a time, hooks for the rest.

What happens around a step (averaging the weights, logging, stopping early, checkpointing)
lives in callbacks (covseg.train.callbacks), so the loop itself reads in one screen and a new
concern is one more callback, not another branch here.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from covseg.metrics import dice
from covseg.runtime import autocast
from covseg.train import distributed as ddp
from covseg.train.losses import distillation


@dataclass
class Run:
    """A training run in progress: what the loop steps and the callbacks read or change."""

    ctx: ddp.Dist
    out: Path
    model: nn.Module  # the network itself (what is saved)
    net: nn.Module  # what the steps run through: the model, or DDP around it
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    # this rank's batch of a step: inputs, labels, and the teachers' logits (or None)
    batch_at: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
    loss_weight: float  # this rank's share of the global batch (DDP), 1 alone
    precision: str
    steps_per_epoch: int
    total_steps: int
    stop: int  # the step this call ends at (total_steps, or earlier with max_steps)
    step: int = 0
    elapsed_s: float = 0.0  # training time of every earlier call (a resumed run adds to it)
    stopped: bool = False  # set by a callback (early stop): the run is complete as it is
    losses: list[float] = field(default_factory=list)  # this epoch's steps, for its record
    dices: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    lung_target: bool = False  # labels 0 / 1 abnormal / 2 normal, the model's class 1 is lung
    distill_weight: float = 0.0  # weight of the KL term to the teachers' logits

    def elapsed(self) -> float:
        return self.elapsed_s + time.perf_counter() - self.started

    def finished(self) -> bool:
        """Whether the run is complete: every step taken, or stopped early."""
        return self.stopped or self.step >= self.total_steps

    def epoch_record(self) -> dict:
        return {"step": self.step, "epoch": self.step / self.steps_per_epoch,
                "loss": float(np.mean(self.losses)), "train_dice_abnormal": float(np.mean(self.dices)),
                "lr": self.opt.param_groups[0]["lr"], "elapsed_s": round(self.elapsed(), 1),
                "precision": self.precision}


class Callback:
    """Hooks the loop calls; each callback owns one concern and does nothing by default."""

    def on_step(self, run: Run) -> None:
        """After each optimiser step."""

    def on_epoch(self, run: Run, record: dict) -> None:
        """At the end of each epoch (and of the call), with the epoch's record."""

    def on_interrupt(self, run: Run) -> None:
        """On Ctrl-C, before the loop gives up."""

    def on_end(self, run: Run) -> None:
        """Always, last."""


def run_loop(run: Run, callbacks: list[Callback]) -> dict:
    """Step from `run.step` to `run.stop` (or until a callback stops the run); returns the last
    epoch record. Callbacks are called in their order; the model is in the mode the caller set
    (training, BatchNorm frozen or not)."""
    record: dict = {}
    try:
        while run.step < run.stop and not run.stopped:
            x, y, soft = run.batch_at(run.step)
            with autocast(run.precision, run.ctx.device.type):
                logits = run.net(x)
            loss = run.loss_fn(logits.float(), y)
            if soft is not None:
                loss = loss + run.distill_weight * distillation(logits.float(), soft, y)
            if run.loss_weight != 1.0:
                loss = loss * run.loss_weight
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            run.sched.step()
            run.step += 1
            truth = (y > 0).long() if run.lung_target else y
            step_loss, step_dice = ddp.mean_over_ranks(
                run.ctx, [float(loss.detach()), dice(logits.argmax(1).cpu().numpy(), truth.cpu().numpy(), 1)])
            run.losses.append(step_loss)
            run.dices.append(step_dice)
            for cb in callbacks:
                cb.on_step(run)
            if run.step % run.steps_per_epoch == 0 or run.step == run.stop:
                record = run.epoch_record()
                for cb in callbacks:
                    cb.on_epoch(run, record)
                run.losses, run.dices = [], []
    except KeyboardInterrupt:
        for cb in callbacks:
            cb.on_interrupt(run)
        raise
    finally:
        for cb in callbacks:
            cb.on_end(run)
    return record
