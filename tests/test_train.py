"""A real (tiny) training run on ma20: the loss falls, and an interrupted run resumes exactly."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from covseg.errors import InputError, OutputExistsError
from covseg.runtime import has_fast_bf16
from covseg.train import load_config, train
from covseg.train.config import config_from_dict

TINY = {"name": "tiny", "model": "anamnet", "loss": "dice_ce", "lr": 0.003, "schedule": "constant",
        "epochs": 6, "steps_per_epoch": 5, "batch_size": 2, "crop": 64, "flips": False,
        "intensity_jitter": False, "threads": 2, "precision": "fp32",
        "data": {"dataset": "ma20", "train_folds": [1], "max_slices": 4}}


def _log(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_on_real_slices(data_dir, tmp_path):
    train(config_from_dict(TINY), tmp_path / "run", progress=False)
    log = _log(tmp_path / "run")
    assert len(log) == 6
    assert log[-1]["loss"] < 0.8 * log[0]["loss"], log
    assert (tmp_path / "run" / "model.pt").is_file()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_continues_where_it_stopped(data_dir, tmp_path, precision):
    cfg = dict(TINY, epochs=2, precision=precision)
    train(config_from_dict(cfg), tmp_path / "full", progress=False)
    train(config_from_dict(cfg), tmp_path / "cut", progress=False, max_steps=5)
    assert not (tmp_path / "cut" / "model.pt").exists()
    with pytest.raises(OutputExistsError):
        train(config_from_dict(cfg), tmp_path / "cut", progress=False)
    train(config_from_dict(cfg), tmp_path / "cut", resume=True, progress=False)
    full = torch.load(tmp_path / "full" / "model.pt")
    cut = torch.load(tmp_path / "cut" / "model.pt")
    for key in full:
        assert torch.allclose(full[key].float(), cut[key].float(), atol=1e-5), key
    assert [r["step"] for r in _log(tmp_path / "cut")] == [5, 10]
    assert {r["precision"] for r in _log(tmp_path / "cut")} == {precision}


def test_auto_precision_is_timed_and_recorded(data_dir, tmp_path):
    train(config_from_dict(dict(TINY, epochs=1, precision="auto")), tmp_path / "run", progress=False)
    first = _log(tmp_path / "run")[0]
    timed = first["precision_timing_s"]
    assert first["precision"] == min(timed, key=timed.get)
    assert set(timed) == ({"fp32", "bf16"} if has_fast_bf16() else {"fp32"})


def test_config_files_parse_and_reject_typos(tmp_path):
    from pathlib import Path
    for path in sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml")):
        assert load_config(path).epochs > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlearning_rate: 0.1\n")
    with pytest.raises(InputError, match="unknown setting.*learning_rate"):
        load_config(bad)
    bad.write_text("name: x\nprecision: fp16\n")
    with pytest.raises(InputError, match="precision"):
        load_config(bad)


def test_a_config_states_only_what_differs_from_its_base(tmp_path):
    """`base:` lays a file over another: keys replace the base's, `data` merges key by key,
    and a missing base or a loop is refused, not half read."""
    (tmp_path / "a.yaml").write_text("name: a\nlr: 0.1\nepochs: 9\n"
                                     "data: {dataset: ma20, train_folds: [1, 2, 3], test_folds: [4]}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\nname: b\nlr: 0.2\n"
                                             "data: {train_folds: [1, 2], test_folds: [3]}\n")
    cfg = load_config(tmp_path / "sub" / "b.yaml")
    assert (cfg.name, cfg.lr, cfg.epochs) == ("b", 0.2, 9)
    assert (cfg.data.dataset, cfg.data.train_folds, cfg.data.test_folds) == ("ma20", [1, 2], [3])
    (tmp_path / "c.yaml").write_text("base: gone.yaml\nname: c\n")
    with pytest.raises(InputError, match="not found.*gone.yaml"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: e.yaml\n")
    (tmp_path / "e.yaml").write_text("base: d.yaml\n")
    with pytest.raises(InputError, match="loop"):
        load_config(tmp_path / "d.yaml")
    (tmp_path / "f.yaml").write_text("base: a.yaml\nlearning_rate: 1\n")
    with pytest.raises(InputError, match="unknown setting.*learning_rate"):
        load_config(tmp_path / "f.yaml")


def test_a_background_run_stops_at_a_checkpoint_on_kill_and_resumes(data_dir, tmp_path):
    """`nohup covseg train ... &` from a script starts with SIGINT ignored; `kill` (SIGTERM)
    must still stop it as Ctrl-C does: exit 130, a checkpoint kept, and --resume finishes it."""
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(TINY, epochs=200)))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "covseg", "train", str(config), "-o", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "covseg: interrupted" in err and "Traceback" not in err
    assert (run / "last.pt").is_file() and not (run / "model.pt").exists()
    stopped = len(_log(run))
    assert stopped < 200
    config.write_text(yaml.safe_dump(dict(TINY, epochs=stopped + 1)))
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (run / "model.pt").is_file()


def test_the_cli_overrides_the_seed_and_records_it(data_dir, tmp_path, cli):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(TINY, epochs=1, steps_per_epoch=1)))
    code, _out, err = cli("train", config, "--seed", "7", "-o", tmp_path / "run")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 7


def test_distillation_pulls_the_student_towards_its_teachers_and_nothing_else(data_dir, tmp_path):
    """Teachers' logits are a loss term and only that: at weight 0 the run is the plain run,
    weight for weight (the soft maps draw no samples); at weight 5 the student ends nearer its
    teacher than the plain run does. (Scored with batch statistics: after ten steps the running
    ones are not yet the networks'.)"""
    import numpy as np

    from covseg.data.datasets import training_data
    from covseg.models.weights import load_model
    from covseg.train.distill import teacher_logits
    from covseg.train.losses import distillation

    train(config_from_dict(dict(TINY, epochs=6, seed=3)), tmp_path / "teacher", progress=False)
    teacher = str(tmp_path / "teacher" / "model.pt")
    base = dict(TINY, epochs=2)
    train(config_from_dict(base), tmp_path / "plain", progress=False)
    train(config_from_dict(dict(base, teachers=[teacher], distill_weight=0.0)), tmp_path / "zero",
          progress=False)
    train(config_from_dict(dict(base, teachers=[teacher], distill_weight=5.0)), tmp_path / "pulled",
          progress=False)
    plain, zero = (torch.load(tmp_path / r / "model.pt") for r in ("plain", "zero"))
    assert all(torch.allclose(plain[k].float(), zero[k].float(), atol=1e-6) for k in plain)

    images, lungs, _ = training_data(config_from_dict(base).data)
    target = torch.from_numpy(teacher_logits([teacher], images, lungs, True).astype(np.float32))

    def kl_to_teacher(run: str) -> float:
        net, _ = load_model(tmp_path / run / "model.pt", "anamnet")
        with torch.no_grad():
            net.train()
            out = net(torch.from_numpy(images * lungs)[:, None].float())
        return float(distillation(out, target, torch.from_numpy(lungs)))

    assert kl_to_teacher("pulled") < 0.7 * kl_to_teacher("plain")


def test_distillation_counts_lung_pixels_only_and_vanishes_at_the_teachers_logits():
    from covseg.train.losses import distillation

    torch.manual_seed(0)
    teacher = torch.randn(2, 3, 8, 8)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:6, 2:6] = 2
    assert float(distillation(teacher.clone(), teacher, labels)) == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(2, 3, 8, 8)
    moved = student.clone()
    moved[:, :, 0, :] += 10.0  # outside the lungs
    assert float(distillation(student, teacher, labels)) > 0.01
    assert float(distillation(moved, teacher, labels)) == pytest.approx(
        float(distillation(student, teacher, labels)), abs=1e-6)


def test_teachers_teach_lesion_models_only():
    with pytest.raises(InputError, match="teachers"):
        config_from_dict(dict(TINY, teachers=["a.pt"], data={"dataset": "ma20", "target": "lungs"}))
