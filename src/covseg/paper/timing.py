"""Per-step training time of each network on this CPU: a short timing, not training.

It is what the equal-step budget is sized from: one step is the protocol's batch of crops through
forward, the weighted loss, backward and an Adam update, in the precision the trainer would pick.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from covseg.models import build_model
from covseg.runtime import autocast, has_fast_bf16, set_threads
from covseg.train.losses import build_loss


def step_seconds(name: str, batch: int, crop: int, precision: str, repeats: int = 3,
                 model_args: dict | None = None) -> float:
    """Fastest of `repeats` timed steps after one warm-up (others' work only ever slows a step)."""
    torch.manual_seed(0)
    model = build_model(name, **(model_args or {})).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    y = torch.randint(0, 3, (batch, crop, crop))
    loss_fn = build_loss("ce_weighted", y.numpy().astype(np.uint8), 3)
    x = torch.rand(batch, 1, crop, crop).contiguous(memory_format=torch.channels_last)

    def step() -> float:
        t0 = time.perf_counter()
        with autocast(precision):
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step()
    return min(step() for _ in range(repeats))


def step_time_rows(names: list[str], batch: int, crop: int, threads: int | None = None) -> list[dict]:
    """One row a network: seconds a step in fp32 and, where native, bf16; the faster is used."""
    set_threads(threads)
    precisions = ["fp32", "bf16"] if has_fast_bf16() else ["fp32"]
    rows = []
    for name in names:
        row = {"model": name, **{p: step_seconds(name, batch, crop, p) for p in precisions}}
        row["chosen"] = min(precisions, key=row.get)
        row["seconds"] = row[row["chosen"]]
        rows.append(row)
    return rows
