"""Training from a config: the data, model, optimiser and callbacks set up, then the loop run.

The loop is covseg.train.loop, what happens around its steps covseg.train.callbacks.

Work is measured in steps, not epochs over files: an epoch is `steps_per_epoch` batches drawn
at random, so a run's cost is fixed up front and a resumed run continues the same sequence.
Under `torchrun` the same loop trains with DistributedDataParallel (covseg.train.distributed
says how a step's batch is split and why the result matches one process).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from covseg.data.augment import Augment
from covseg.data.datasets import load_validation_set, num_classes, training_data
from covseg.errors import InputError, OutputExistsError
from covseg.models import build_model
from covseg.runtime import autocast, fastest_precision, resolve_precision, set_threads
from covseg.train import distributed as ddp
from covseg.train.callbacks import CHECKPOINT, LOG, Checkpoint, EarlyStop, Ema, MetricsLog
from covseg.train.config import TrainConfig
from covseg.train.losses import build_loss
from covseg.train.loop import Run, run_loop


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg.step_epochs * steps_per_epoch, cfg.gamma)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                   pct_start=0.15)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer '{cfg.optimizer}'; choose one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _precision(cfg: TrainConfig, model: torch.nn.Module, loss_fn, x: torch.Tensor,
               y: torch.Tensor) -> tuple[str, dict[str, float]]:
    """The precision this run trains in: as configured, or the faster one timed on a copy.

    The copy keeps the timing steps (which move BatchNorm statistics) out of the real model.
    On a GPU bf16 is a candidate where the GPU has it, and each timed step waits for the GPU.
    """
    if cfg.precision != "auto":
        return resolve_precision(cfg.precision), {}
    probe = copy.deepcopy(model)
    cuda = x.device.type == "cuda"

    def step(precision: str) -> None:
        with autocast(precision, x.device.type):
            out = probe(x)
        loss_fn(out.float(), y).backward()
        probe.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(x.device)

    return fastest_precision(step, device_type=x.device.type)


def _freeze_batchnorm(model: nn.Module) -> None:
    """Eval mode for every BatchNorm: running statistics normalise, and stay as they are."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _wrap(ctx: ddp.Dist, model: nn.Module) -> nn.Module:
    """The module the steps run through: DDP (which averages gradients) under torchrun."""
    if not ctx.active:
        return model
    return DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, force: bool = False,
          progress: bool = True, max_steps: int | None = None) -> dict:
    """Train per `cfg` into `out_dir`; returns the final log record.

    `max_steps` stops early (the run stays resumable), which the tests use. Under `torchrun`
    every process calls this; rank 0 alone writes the run folder.
    """
    ctx = ddp.setup()
    try:
        return _train(ctx, cfg, Path(out_dir), resume, force, progress, max_steps)
    finally:
        ddp.teardown(ctx)


def _train(ctx: ddp.Dist, cfg: TrainConfig, out: Path, resume: bool, force: bool, progress: bool,
           max_steps: int | None) -> dict:
    """`train` in this process: all ranks step together, rank 0 writes."""
    if (out / CHECKPOINT).exists() and not (resume or force):
        raise OutputExistsError(f"{out} already holds a training run; pass --resume to continue "
                                "it or --force to start over")
    if cfg.batch_size < ctx.world_size:
        raise InputError(f"batch_size {cfg.batch_size} cannot be shared by {ctx.world_size} "
                         "processes; use a batch of at least one sample per process")
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    set_threads(ddp.threads_per_process(ctx, cfg.threads))
    torch.manual_seed(cfg.seed)

    images, lungs, labels = training_data(cfg.data, cfg.scale)
    n_classes = num_classes(cfg.data)
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(images) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch

    model = build_model(cfg.model, num_classes=n_classes, **cfg.model_args)
    if cfg.init:
        model.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True))
    if ctx.world_size > 1 and ctx.device.type == "cuda":  # pooled statistics (GPU-only in torch)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(ctx.device, memory_format=torch.channels_last)
    opt = _optimizer(cfg, model)
    loss_fn = build_loss(cfg.loss, labels, n_classes, cfg.data.target, cfg.lesion_weight).to(ctx.device)
    mine = ddp.shard(ctx, cfg.batch_size)
    augment = Augment(crop=cfg.crop, flips=cfg.flips, zoom=tuple(cfg.zoom) if cfg.zoom else None,
                      rotate_deg=cfg.rotate_deg, quarter_turns=cfg.quarter_turns,
                      reenhance=cfg.reenhance, resample=cfg.resample,
                      dense_wall=cfg.dense_wall, jitter=cfg.intensity_jitter,
                      mask_lungs=cfg.data.mask_lungs and cfg.data.target != "lungs")

    soft = None
    if cfg.teachers:  # computed again on resume: the same teachers give the same targets
        from covseg.train.distill import teacher_logits

        soft = teacher_logits(cfg.teachers, images, lungs, augment.mask_lungs)

    def batch_at(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """This rank's share of the step's batch: drawn from (seed, step) alone, so a resumed run
        sees the same data. Every rank augments the whole global batch (the generator's draws
        follow one another) and keeps its own samples."""
        rng = np.random.default_rng([cfg.seed, step])
        samples = [augment(images[i], lungs[i], labels[i], rng, None if soft is None else soft[i])
                   for i in rng.integers(0, len(images), cfg.batch_size)]
        samples = [samples[i] for i in mine]
        x = torch.from_numpy(np.stack([s[0] for s in samples])[:, None]).to(ctx.device).contiguous(
            memory_format=torch.channels_last)
        y = torch.from_numpy(np.stack([s[1] for s in samples]).astype(np.int64)).to(ctx.device)
        t = None if soft is None else torch.from_numpy(np.stack([s[2] for s in samples])).to(ctx.device)
        return x, y, t

    run = Run(ctx, out, model, _wrap(ctx, model), opt, _scheduler(cfg, opt, steps_per_epoch),
              loss_fn, batch_at, ddp.share_weight(ctx, cfg.batch_size), "fp32", steps_per_epoch,
              total_steps, min(total_steps, max_steps) if max_steps else total_steps,
              lung_target=cfg.data.target == "lungs", distill_weight=cfg.distill_weight)
    ema = Ema(model, cfg.ema) if cfg.ema is not None else None
    early = None
    if cfg.patience is not None:  # the validation patients are loaded and checked up front
        sidecar = {"model": cfg.model, "model_args": {**cfg.model_args, "num_classes": n_classes}}
        early = EarlyStop(run, cfg.patience, load_validation_set(cfg.data), cfg.data, sidecar, ema)
    checkpoint = Checkpoint(run, cfg.to_dict(), ema, early)
    timed: dict[str, float] = {}
    if resume and (out / CHECKPOINT).exists():
        checkpoint.restore(run)
    else:
        if force and ctx.is_main:
            (out / LOG).unlink(missing_ok=True)
        if ctx.is_main:
            run.precision, timed = _precision(cfg, model, loss_fn, *batch_at(0)[:2])
    run.precision, timed = ddp.broadcast(ctx, (run.precision, timed))  # one arithmetic everywhere
    if ctx.is_main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    model.train()
    if cfg.freeze_batchnorm:
        _freeze_batchnorm(model)
    log = MetricsLog(run, cfg.name, progress, timed)
    callbacks = [c for c in (ema, early, log, checkpoint)  # the average first; the stop decided
                 if c is not None]                        # before it is logged and checkpointed
    run.started = time.perf_counter()
    record = run_loop(run, callbacks)
    ddp.barrier(ctx)  # every rank returns once the run folder is complete
    return record
