"""The training loop and its callbacks on a toy network and constant data (no shared data):
early stop, the averaged weights, checkpoints that resume, the log."""
from __future__ import annotations

import json

import torch
from torch import nn

from covseg.train.callbacks import CHECKPOINT, LOG, WEIGHTS, Checkpoint, EarlyStop, Ema, MetricsLog
from covseg.train.distributed import Dist
from covseg.train.loop import Run, run_loop

X = torch.linspace(0, 1, 2 * 16 * 16).reshape(2, 1, 16, 16)
Y = (X[:, 0] > 0.5).long()


def _run(out, lr: float, epochs: int, stop: int | None = None) -> Run:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    total = epochs * 2
    return Run(Dist(), out, model, model, opt, sched, nn.CrossEntropyLoss(), lambda step: (X, Y),
               1.0, "fp32", 2, total, stop or total)


def _train(out, lr: float, epochs: int, patience: int | None = None, ema: float | None = None,
           stop: int | None = None, resume: bool = False) -> tuple[Run, list[dict]]:
    out.mkdir(exist_ok=True)
    run = _run(out, lr, epochs, stop)
    average = Ema(run.model, ema) if ema else None
    early = EarlyStop(patience) if patience else None
    checkpoint = Checkpoint(run, {"toy": True}, average, early)
    if resume:
        checkpoint.restore(run)
    callbacks = [c for c in (average, early, MetricsLog(run, "toy", False, {}), checkpoint) if c]
    run_loop(run, callbacks)
    return run, [json.loads(line) for line in (out / LOG).read_text().splitlines()]


def test_a_plateau_stops_the_run_and_its_weights_are_written(tmp_path):
    run, log = _train(tmp_path / "run", lr=0.0, epochs=10, patience=2)  # lr 0: a flat loss
    assert run.stopped and run.step == 6 and len(log) == 3  # best at epoch 1, 2 epochs flat
    assert "early_stop" in log[-1] and "early_stop" not in log[1]
    assert (tmp_path / "run" / WEIGHTS).is_file()
    again, log = _train(tmp_path / "run", lr=0.0, epochs=10, patience=2, resume=True)
    assert again.step == 6 and len(log) == 3  # a resumed run that had stopped stays stopped


def test_a_falling_loss_is_not_stopped(tmp_path):
    run, log = _train(tmp_path / "run", lr=0.5, epochs=4, patience=2)
    assert not run.stopped and run.step == 8 and len(log) == 4
    assert log[-1]["loss"] < log[0]["loss"]


def test_early_stop_counts_on_across_a_resume(tmp_path):
    stop = EarlyStop(patience=3)
    for loss in (1.0, 1.0, 1.0):
        stop.on_epoch(_run(tmp_path, 0.0, 1), {"loss": loss})
    resumed = EarlyStop(patience=3)
    resumed.load_state_dict(stop.state_dict())
    run = _run(tmp_path, 0.0, 1)
    resumed.on_epoch(run, {"loss": 1.0})
    assert run.stopped and resumed.waited == 3


def test_the_averaged_weights_are_shipped_and_resume_exactly(tmp_path):
    full, _ = _train(tmp_path / "full", lr=0.5, epochs=3, ema=0.9)
    _train(tmp_path / "cut", lr=0.5, epochs=3, ema=0.9, stop=3)
    assert (tmp_path / "cut" / CHECKPOINT).is_file() and not (tmp_path / "cut" / WEIGHTS).exists()
    _train(tmp_path / "cut", lr=0.5, epochs=3, ema=0.9, resume=True)
    shipped, cut = (torch.load(tmp_path / f / WEIGHTS) for f in ("full", "cut"))
    raw = full.model.state_dict()
    assert any(not torch.equal(shipped[k], raw[k]) for k in raw)  # the average, not the last step
    for key in shipped:
        assert torch.allclose(shipped[key], cut[key], atol=1e-6), key


def test_ship_makes_weights_that_load_by_themselves(tmp_path, cli):
    from dataclasses import asdict

    from covseg.infer import LesionSegmenter
    from covseg.models import build_model
    from covseg.models.weights import sha256
    from covseg.train.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    torch.save(build_model("anamnet").state_dict(), run / WEIGHTS)
    (run / "config.json").write_text(json.dumps(asdict(TrainConfig(name="toy"))))
    (run / LOG).write_text(json.dumps({"step": 10, "elapsed_s": 1.5}) + "\n")
    code, out, err = cli("ship", run, "-o", tmp_path / "w.pt", "--trained-on", "a toy")
    assert code == 0, err
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["sha256"] == sha256(tmp_path / "w.pt") and meta["trained_on"] == "a toy"
    segmenter = LesionSegmenter(tmp_path / "w.pt", backend="torch")  # no model name needed
    assert segmenter.meta["model"] == "anamnet" and segmenter.meta["train_steps"] == 10
    code, _, err = cli("ship", tmp_path, "-o", tmp_path / "x.pt", "--trained-on", "x")
    assert code == 2 and "not a finished training run" in err and err.count("\n") == 1
