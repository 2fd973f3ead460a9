"""Per-step training time of each network on this CPU: a short timing, not training.

It is what the equal-step budget is sized from: one step is the protocol's batch of crops through
forward, the weighted loss, backward and an Adam update, in fp32 and, where native, bf16 (the
trainer trains in the faster). The precisions take turns and each keeps its fastest step
(`runtime.fastest_precision`), so a burst of other work slows both alike instead of deciding.
Each row keeps the machine's 1-minute load average: on cores shared with other work a step is
slower by about load / cores, and the reader must be able to see that.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from covseg.models import build_model
from covseg.runtime import autocast, fastest_precision, set_threads
from covseg.train.losses import build_loss


def step_seconds(name: str, batch: int, crop: int, repeats: int = 5) -> dict[str, float]:
    """Fastest timed step per precision, after one warm-up each."""
    torch.manual_seed(0)
    model = build_model(name).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    y = torch.randint(0, 3, (batch, crop, crop))
    loss_fn = build_loss("ce_weighted", y.numpy().astype(np.uint8), 3)
    x = torch.rand(batch, 1, crop, crop).contiguous(memory_format=torch.channels_last)

    def step(precision: str) -> None:
        with autocast(precision):
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return fastest_precision(step, repeats=repeats)[1]


def step_time_rows(names: list[str], batch: int, crop: int, threads: int | None = None) -> list[dict]:
    """One row a network: seconds a step per precision, the faster one, the load at the time and
    the machine (the record outlives it: runs/paper is kept in git)."""
    from covseg.runtime import cpu_description

    set_threads(threads)
    rows = []
    for name in names:
        row: dict = {"model": name, **step_seconds(name, batch, crop)}
        row["chosen"] = min(("fp32", "bf16"), key=lambda p: row.get(p, float("inf")))
        row["seconds"] = row[row["chosen"]]
        row["load"] = round(os.getloadavg()[0], 2)
        row["machine"] = cpu_description()
        rows.append(row)
    return rows
