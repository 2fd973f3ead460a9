"""The training loop and its callbacks on a toy network and constant data (no shared data):
early stop, the averaged weights, checkpoints that resume, the log."""
from __future__ import annotations

import json

import torch
from torch import nn

from covseg.runtime import machine_description
from covseg.train.callbacks import (BEST, CHECKPOINT, LOG, WEIGHTS, Checkpoint, EarlyStop, Ema,
                                    MetricsLog)
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
    return Run(Dist(), out, model, model, opt, sched, nn.CrossEntropyLoss(), lambda step: (X, Y, None),
               1.0, "fp32", 2, total, stop or total)


class ScriptedStop(EarlyStop):
    """Early stopping with validation scores given in advance (the toy has no patients)."""

    def __init__(self, run: Run, patience: int, scores: list[float]) -> None:
        super().__init__(run, patience, None, None, {}, None)
        self.scores = scores

    def score(self, run: Run) -> float:
        return self.scores[round(run.step / run.steps_per_epoch) - 1]


def _train(out, lr: float, epochs: int, scores: list[float] | None = None, patience: int = 2,
           ema: float | None = None, stop: int | None = None, resume: bool = False
           ) -> tuple[Run, list[dict]]:
    out.mkdir(exist_ok=True)
    run = _run(out, lr, epochs, stop)
    average = Ema(run.model, ema) if ema else None
    early = ScriptedStop(run, patience, scores) if scores else None
    checkpoint = Checkpoint(run, {"toy": True}, average, early)
    if resume:
        checkpoint.restore(run)
    callbacks = [c for c in (average, early, MetricsLog(run, "toy", False, {}), checkpoint) if c]
    run_loop(run, callbacks)
    return run, [json.loads(line) for line in (out / LOG).read_text().splitlines()]


def test_early_stop_keeps_the_best_epoch_and_ships_it(tmp_path):
    scores = [0.1, 0.3, 0.2, 0.25, 0.9, 0.9]
    run, log = _train(tmp_path / "run", lr=0.5, epochs=6, scores=scores, patience=2)
    assert run.stopped and run.step == 8 and len(log) == 4  # best at epoch 2, then 2 worse
    assert [r["val_dice_abnormal"] for r in log] == scores[:4]
    assert log[-1]["best_epoch"] == 2 and "epoch 2 ship" in log[-1]["early_stop"]
    assert "early_stop" not in log[2]
    out = tmp_path / "run"
    assert (out / WEIGHTS).read_bytes() == (out / BEST).read_bytes()
    again, log = _train(out, lr=0.5, epochs=6, scores=scores, patience=2, resume=True)
    assert again.step == 8 and len(log) == 4  # a resumed run that had stopped stays stopped


def test_a_better_score_each_epoch_is_never_stopped(tmp_path):
    run, log = _train(tmp_path / "run", lr=0.5, epochs=4, scores=[0.1, 0.2, 0.3, 0.4])
    assert not run.stopped and run.step == 8 and log[-1]["best_epoch"] == 4
    assert {r["machine"] for r in log} == {machine_description()}  # where each epoch ran


def test_early_stop_counts_on_across_a_resume(tmp_path):
    full, _ = _train(tmp_path / "full", lr=0.5, epochs=6, scores=[0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
                     patience=3)
    _train(tmp_path / "cut", lr=0.5, epochs=6, scores=[0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
           patience=3, stop=5)  # two epochs and a half
    cut, log = _train(tmp_path / "cut", lr=0.5, epochs=6, scores=[0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
                      patience=3, resume=True)
    assert full.step == cut.step == 8 and log[-1]["best_epoch"] == 1


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
    epochs = [{"step": 5, "elapsed_s": 0.7, "machine": "CPU a"},  # resumed on a GPU machine
              {"step": 10, "elapsed_s": 1.5, "machine": "GPU b"}]
    (run / LOG).write_text("".join(json.dumps(e) + "\n" for e in epochs))
    code, out, err = cli("ship", run, "-o", tmp_path / "w.pt", "--trained-on", "a toy")
    assert code == 0, err
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["sha256"] == sha256(tmp_path / "w.pt") and meta["trained_on"] == "a toy"
    assert meta["trained_where"] == "CPU a; GPU b"
    segmenter = LesionSegmenter(tmp_path / "w.pt", backend="torch")  # no model name needed
    assert segmenter.meta["model"] == "anamnet" and segmenter.meta["train_steps"] == 10
    code, _, err = cli("ship", tmp_path, "-o", tmp_path / "x.pt", "--trained-on", "x")
    assert code == 2 and "not a finished training run" in err and err.count("\n") == 1
    assert "init_sha256" not in meta and meta["metrics"] == {}


def test_ship_records_the_figures_the_margin_and_the_start_of_a_fine_tuned_run(tmp_path, cli):
    from dataclasses import asdict

    from covseg.infer import LesionSegmenter
    from covseg.models import build_model
    from covseg.models.weights import sha256
    from covseg.train.config import TrainConfig

    start, run = tmp_path / "start.pt", tmp_path / "run"
    run.mkdir()
    torch.save(build_model("anamnet").state_dict(), start)
    torch.save(build_model("anamnet").state_dict(), run / WEIGHTS)
    (run / "config.json").write_text(json.dumps(asdict(TrainConfig(name="toy", init=str(start)))))
    (run / LOG).write_text(json.dumps({"step": 5, "elapsed_s": 0.7, "machine": "CPU a"}) + "\n")
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"ma20_f4_abnormal_dice_per_slice_int8": 0.73}))
    code, _, err = cli("ship", run, "-o", tmp_path / "w.pt", "--trained-on", "x", "--metrics", figures,
                       "--margin", "-1.35")
    assert code == 0, err
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["init_sha256"] == sha256(start)
    assert meta["metrics"] == {"ma20_f4_abnormal_dice_per_slice_int8": 0.73}
    assert LesionSegmenter(tmp_path / "w.pt", backend="torch").postprocess.margin == -1.35
    figures.write_text("[0.73]")
    code, _, err = cli("ship", run, "-o", tmp_path / "v.pt", "--trained-on", "x", "--metrics", figures)
    assert code == 2 and "JSON object" in err and err.count("\n") == 1
    assert not (tmp_path / "v.pt").exists()


def test_a_lung_models_threshold_ships_with_it_and_decides_its_lungs(tmp_path, cli):
    import numpy as np
    from dataclasses import asdict

    from covseg.lungs.learned import LungModel
    from covseg.models import build_model
    from covseg.train.config import DataConfig, TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    torch.save(build_model("lung_unet", num_classes=2, width=8).state_dict(), run / WEIGHTS)
    config = TrainConfig(name="toy_lungs", model="lung_unet", model_args={"width": 8},
                         data=DataConfig(target="lungs"))
    (run / "config.json").write_text(json.dumps(asdict(config)))
    (run / LOG).write_text(json.dumps({"step": 3, "elapsed_s": 0.2, "machine": "CPU a"}) + "\n")
    code, _, err = cli("ship", run, "-o", tmp_path / "l.pt", "--trained-on", "toy",
                       "--threshold", "0.6")
    assert code == 0, err
    assert json.loads((tmp_path / "l.json").read_text())["threshold"] == 0.6
    model = LungModel(tmp_path / "l.pt")  # width and threshold come from the metadata
    assert model.threshold == 0.6
    prob = np.zeros((1, 32, 32), np.float32)
    prob[0, 4:28, 2:14] = 0.55  # lung at the default cut, not at this model's
    prob[0, 4:28, 18:30] = 0.65
    model.probabilities = lambda stack, intensity: prob
    sides = model.apply(np.zeros((1, 32, 32), np.float32), "display")
    assert sides[0, :, 2:14].sum() == 0 and sides[0, 4:28, 18:30].all()
    code, _, _ = cli("ship", run, "-o", tmp_path / "m.pt", "--trained-on", "toy")
    assert code == 0 and json.loads((tmp_path / "m.json").read_text())["threshold"] == 0.5
    lesions = tmp_path / "lesion_run"
    lesions.mkdir()
    for name in ("config.json", LOG):
        (lesions / name).write_text((run / name).read_text().replace('"lungs"', '"lesions"'))
    torch.save(build_model("anamnet").state_dict(), lesions / WEIGHTS)
    code, _, err = cli("ship", lesions, "-o", tmp_path / "x.pt", "--trained-on", "x",
                       "--threshold", "0.6")
    assert code == 2 and "lung model" in err and not (tmp_path / "x.pt").exists()
