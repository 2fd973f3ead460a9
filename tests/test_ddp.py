"""DDP training with real `torchrun` processes on CPU (gloo) against one process, on real ma20 slices.

The comparison config freezes BatchNorm: SyncBatchNorm does not run on CPU, so with batch
statistics a rank's share of the batch would be normalised differently than the whole batch is
in one process (covseg.train.distributed explains it); with frozen statistics and a per-sample
mean loss (CE), DDP's averaged gradients are the global batch's, so the weights must agree.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml

from covseg.train import train
from covseg.train import distributed as ddp
from covseg.train.config import config_from_dict

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend")

TINY = {"name": "tiny", "model": "anamnet", "loss": "ce", "lr": 0.003, "schedule": "constant",
        "epochs": 2, "steps_per_epoch": 1, "batch_size": 2, "crop": 64, "flips": False,
        "intensity_jitter": False, "threads": 1, "precision": "fp32", "freeze_batchnorm": True,
        "data": {"dataset": "ma20", "train_folds": [1], "max_slices": 4}}
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}  # fp32 sums taken in another order by the all-reduce


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(config: Path, out: Path, *extra: str, procs: int = 2) -> None:
    """`torchrun --nproc_per_node procs -m covseg train config -o out ...` as separate processes."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
           "--master_port", str(_free_port()), "-m", "covseg", "train", str(config), "-o", str(out),
           *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"] if "optimizer" in state else state


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), **TOLERANCE), \
            f"{key}: max difference {float((a[key].float() - b[key].float()).abs().max()):.2e}"


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """One process (cut after step 1, then resumed), and 2 processes: cut, resumed, uncut."""
    root = tmp_path_factory.mktemp("ddp")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    train(config_from_dict(TINY), root / "one", progress=False, max_steps=1)
    one_step = _weights(root / "one" / "last.pt")
    train(config_from_dict(TINY), root / "one", resume=True, progress=False)
    _torchrun(config, root / "cut", "--max-steps", "1")
    cut_files = sorted(p.name for p in (root / "cut").iterdir())
    cut_log = _log(root / "cut")
    cut_step = _weights(root / "cut" / "last.pt")
    _torchrun(config, root / "cut", "--resume")
    _torchrun(config, root / "full")
    return {"root": root, "one_step": one_step, "cut_files": cut_files, "cut_log": cut_log,
            "cut_step": cut_step}


def test_one_ddp_step_gives_the_weights_of_one_process(runs):
    one, two = runs["one_step"], runs["cut_step"]
    print(f"max weight difference after one step, 2 processes vs 1: {_max_difference(one, two):.2e}")
    _assert_close(one, two)
    single_log = _log(runs["root"] / "one")[0]
    assert runs["cut_log"][0]["loss"] == pytest.approx(single_log["loss"], rel=1e-5)


def test_only_rank_0_writes(runs):
    assert runs["cut_files"] == ["config.json", "last.pt", "metrics.jsonl"]
    assert [r["step"] for r in runs["cut_log"]] == [1]  # a second writer would append its own
    assert {r["precision"] for r in runs["cut_log"]} == {"fp32"}
    assert [r["step"] for r in _log(runs["root"] / "full")] == [1, 2]


def test_resumed_ddp_run_ends_where_an_uncut_one_does(runs):
    root = runs["root"]
    assert [r["step"] for r in _log(root / "cut")] == [1, 2]
    resumed, uncut = _weights(root / "cut" / "model.pt"), _weights(root / "full" / "model.pt")
    print(f"max weight difference, resumed vs uncut 2-process run: {_max_difference(resumed, uncut):.2e}")
    _assert_close(resumed, uncut)
    _assert_close(_weights(root / "one" / "model.pt"), uncut)  # and two steps match one process


def test_outside_torchrun_nothing_is_distributed(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = ddp.setup()
    assert (ctx.rank, ctx.world_size, ctx.active) == (0, 1, False)
    assert ddp.shard(ctx, 5) == [0, 1, 2, 3, 4] and ddp.share_weight(ctx, 5) == 1.0


def test_uneven_shares_are_weighted_to_the_global_mean():
    ranks = [ddp.Dist(rank=r, world_size=2) for r in range(2)]
    assert [ddp.shard(c, 5) for c in ranks] == [[0, 2, 4], [1, 3]]
    losses = torch.tensor([0.1, 0.7, 0.3, 0.9, 0.5])
    ddp_mean = sum(float(losses[ddp.shard(c, 5)].mean()) * ddp.share_weight(c, 5) for c in ranks) / 2
    assert ddp_mean == pytest.approx(float(losses.mean()))


def test_under_torchrun_with_gpus_the_group_is_nccl_on_the_local_gpu(monkeypatch):
    """No GPU here: the decision itself is checked, with torch's CUDA and process-group calls
    stood in for (the nccl run is for a machine with GPUs)."""
    from covseg.train import distributed

    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda d: calls.setdefault("device", d))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend: calls.setdefault("backend", backend))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    ctx = distributed.setup()
    assert calls == {"device": torch.device("cuda", 1), "backend": "nccl"}
    assert ctx.device == torch.device("cuda", 1) and ctx.owns_group and ctx.rank == 1
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    calls.clear()
    assert distributed.setup().device.type == "cpu" and calls == {"backend": "gloo"}
