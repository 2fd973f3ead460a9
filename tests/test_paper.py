"""`covseg paper` end to end on a tiny plan (a few steps a table), its cache and its pieces."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from covseg.errors import InputError
from covseg.paper import cache as cache_module
from covseg.paper import reproduce
from covseg.paper.perturb import perturb_
from covseg.paper.plan import DEFAULT_PLAN, MA20_F4, load_plan, run_config, schedule
from covseg.train import train

TINY = {
    "protocol": {"data": {"dataset": "ma20", "train_folds": [1, 2, 3], "test_folds": [4]},
                 "loss": "ce_weighted", "optimizer": "adam", "lr": 0.001, "schedule": "step",
                 "gamma": 0.1, "batch_size": 2, "crop": 32, "flips": True,
                 "intensity_jitter": False, "precision": "fp32", "seed": 0},
    "budget_steps": 3, "max_slices": 2,
    "networks": ["anamnet", "enet", "lednet"], "table_vii": ["anamnet"],  # small: seconds a run
    "rotation": {"always": ["anamnet"], "best_baselines": 1},
    "thesis": ["mobilenetv2_unet"], "thesis_losses": ["dice"],
    "perturbation": {"models": ["anamnet", "enet"], "etas": [-0.01, 0.0, 0.01], "draws": 2, "slices": 2},
    "table_iv": {"size": 32, "latency": False},
}
HEADINGS = ["## Table IV", "## Table VII", "## Table VIII", "### The 3-fold rotation",
            "## Table IX", "## Table X", "## Table XI", "## Thesis models", "## Claims we cannot check"]


def test_tiny_plan_fills_every_table_and_never_repeats_a_run(data_dir, tmp_path, monkeypatch, cli):
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(TINY))
    runs, doc = tmp_path / "runs", tmp_path / "paper.md"
    # a run stopped after one step is resumed from its checkpoint, not started over
    first = run_config(load_plan(plan_path), "anamnet", MA20_F4)
    folder = cache_module.RunCache(runs).folder(first)
    train(first, folder, progress=False, max_steps=1)

    reproduce(plan_path, runs, doc, progress=False)
    page = doc.read_text()
    for heading in HEADINGS:
        assert heading in page, heading
    assert "pending" not in page.lower()
    assert page.count("**Agree**") + page.count("**Disagree**") >= 4  # VII, VIII, rotation, IX
    assert "Cannot judge: Anam-Net and U-Net are both needed" in page  # XI without U-Net
    assert "0.798" in page and "not transcribed" in page
    steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(cache_module, "train", no_training)
    # the records outlive the machine, the weights do not: a new checkout has only the records
    for weights in runs.rglob("*.pt"):
        weights.unlink()
    code, out, _ = cli("paper", "--plan", plan_path, "--runs", runs, "--doc", doc, "--only", "VIII", "XI")
    assert code == 0 and "wrote" in out
    assert doc.read_text().split("\n", 3)[3] == page.split("\n", 3)[3]  # same tables, cached
    machine = json.loads((folder / "model.json").read_text())["machine"]
    assert "run(s)" in page and machine
    assert f"## Step times, and the budget\n\nMeasured on {machine}." in page  # named, not "this CPU"


def test_the_tables_say_what_they_lack_and_runs_are_served_in_order(data_dir, tmp_path):
    """From the cache alone: each run once, with every score it owes (Table VIII's fold-4 runs
    also owe IX and XI), the rotation only once VIII is scored; one job takes Table VIII first and
    the cheapest first, several take the dearest first."""
    from covseg.paper.reproduce import _ordered, wanted

    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(TINY))
    groups = wanted(load_plan(plan_path), tmp_path / "runs", None)
    by_name = {name: (order, [w.kind for w in wants]) for name, order, wants in groups}
    anamnet_f4 = [n for n in by_name if n.startswith("anamnet-") and by_name[n][0] == 0]
    assert len(anamnet_f4) == 1 and by_name[anamnet_f4[0]][1] == ["scores", "scores", "perturbed"]
    assert sorted(order for order, _ in by_name.values()) == [0, 0, 0, 3, 3, 3, 4, 6]  # VIII x3,
    assert len(by_name) == len(groups)  # X's other three, VII, thesis: no rotation before VIII
    seconds = {"anamnet": 3.0, "enet": 1.0, "lednet": 2.0, "mobilenetv2_unet": 9.0}
    one = [wants[0].cfg.model for wants in _ordered(groups, seconds, jobs=1)]
    assert one[:3] == ["enet", "lednet", "anamnet"] and one[-1] == "mobilenetv2_unet"
    assert [wants[0].cfg.model for wants in _ordered(groups, seconds, jobs=4)][0] == "mobilenetv2_unet"
    assert wanted(load_plan(plan_path), tmp_path / "runs", ["IV"]) == []  # IV trains nothing


def test_runs_train_side_by_side_in_their_own_processes(data_dir, tmp_path):
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(TINY))
    runs = tmp_path / "runs"
    reproduce(plan_path, runs, tmp_path / "paper.md", only=["X"], progress=False, jobs=2)
    page = (tmp_path / "paper.md").read_text()
    table_x = page.split("## Table X", 1)[1].split("\n## ", 1)[0]
    assert "pending" not in table_x.lower() and "no AD blocks, plain CE" in table_x
    assert len(list(runs.glob("anamnet-*/model.json"))) == 4


def test_a_run_stopped_on_another_machine_starts_over_without_its_old_log(data_dir, tmp_path):
    """Its checkpoint stayed behind (git keeps only the records): the log it left must not be
    continued by a fresh run, or the loss curve would mix two runs."""
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(TINY))
    cfg = run_config(load_plan(plan_path), "lednet", MA20_F4)
    cache = cache_module.RunCache(tmp_path / "runs", progress=False)
    train(cfg, cache.folder(cfg), progress=False, max_steps=2)
    (cache.folder(cfg) / "last.pt").unlink()
    cache.weights(cfg)
    assert [r["step"] for r in cache.log(cfg)] == [1, 2, 3]


@pytest.mark.skipif(not (Path(__file__).parents[1] / ".git").exists(), reason="not a git checkout")
def test_git_keeps_the_run_records_and_not_the_weights():
    root = Path(__file__).parents[1]

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0
    assert not ignored("runs/paper/anamnet-0123456789ab/metrics.jsonl")
    assert not ignored("runs/paper/anamnet-0123456789ab/eval-0123456789ab.json")
    assert ignored("runs/paper/anamnet-0123456789ab/model.pt")
    assert ignored("runs/paper/anamnet-0123456789ab/last.pt")
    assert ignored("runs/anamnet_ma20/model.pt") and ignored("runs/anamnet_ma20/metrics.jsonl")


def test_run_keys_hold_only_changed_settings():
    """A setting added later with a default that keeps the old behaviour must not re-key (and so
    retrain) every cached run: the key is pinned for a fixed config."""
    from covseg.train.config import DataConfig, TrainConfig

    cfg = TrainConfig(model="unet", data=DataConfig(test_folds=[1]))
    assert cache_module.changed(cfg) == {"model": "unet", "data": {"test_folds": [1]}}
    assert cache_module.changed(TrainConfig(name="x", lr=5e-4)) == {"name": "x"}
    assert cache_module.config_hash(cfg) == "db22cf310e94"
    assert cache_module.config_hash(TrainConfig(model="unet", name="other", threads=2,
                                                data=DataConfig(test_folds=[1]))) == "db22cf310e94"
    assert cache_module.config_hash(TrainConfig(model="unet", lr=1e-3)) != "db22cf310e94"


def test_plan_and_budget(tmp_path):
    plan = load_plan(DEFAULT_PLAN)
    assert len(plan.networks) == 8 and plan.budget_steps % 3 == 0
    assert schedule(1200) == {"epochs": 30, "steps_per_epoch": 40, "step_epochs": 10}
    assert schedule(3) == {"epochs": 3, "steps_per_epoch": 1, "step_epochs": 1}
    cfg = run_config(plan, "unet", MA20_F4)
    assert cfg.epochs * cfg.steps_per_epoch == plan.budget_steps and cfg.loss == "ce_weighted"
    with pytest.raises(InputError, match="multiple of 3"):
        load_plan(DEFAULT_PLAN, budget=100)
    with pytest.raises(InputError, match="unknown table"):
        reproduce(DEFAULT_PLAN, tmp_path / "runs", tmp_path / "p.md", only=["XII"])
    stray = tmp_path / "stray.yaml"
    stray.write_text(yaml.safe_dump({**TINY, "perturbation": {**TINY["perturbation"], "models": ["unet"]}}))
    with pytest.raises(InputError, match="not among the plan's networks"):
        load_plan(stray)


def test_perturbation_is_one_sided_and_restorable():
    model = torch.nn.Conv2d(1, 4, 3)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    perturb_(model, original, -0.1, seed=0)
    for name, p in model.named_parameters():
        ratio = p.detach() / original[name]
        assert bool(((ratio <= 1.0) & (ratio >= 0.9)).all()), name
    perturb_(model, original, 0.0, seed=0)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), original[name])


def _scored(label: str, model: str, dice: float, loss: str = "ce_weighted", sens: float = 0.8):
    from covseg.paper.tables import Row
    from covseg.train.config import TrainConfig

    cls = {"dice": dice, "sensitivity": sens, "specificity": 0.99, "accuracy": 0.98}
    scores = {avg: {"abnormal": cls, "normal": {**cls, "dice": 0.9}} for avg in ("per_slice", "pooled")}
    return Row(label, TrainConfig(model=model, loss=loss), scores)


def test_thesis_and_rotation_conclusions_follow_the_numbers():
    from covseg.paper import render

    anam = _scored("anamnet", "anamnet", 0.68)
    thesis = [_scored("mobilenetv2_unet, ce_weighted", "mobilenetv2_unet", 0.62, sens=0.83),
              _scored("mobilenetv2_unet, dice", "mobilenetv2_unet", 0.65, "dice", sens=0.64)]
    text = render.thesis_verdict(thesis, anam)
    assert "None beats Anam-Net by more than 0.01" in text and "1.5-1.5x" in text
    assert "+0.0300, the Dice loss raises it" in text and "0.8300 -> 0.6400" in text
    thesis[1] = _scored("mobilenetv2_unet, dice", "mobilenetv2_unet", 0.70, "dice")
    assert "Beating Anam-Net by more than 0.01: mobilenetv2_unet, dice 0.7000" in \
        render.thesis_verdict(thesis, anam)
    thesis[1].scores = None  # still training
    assert render.thesis_verdict(thesis, anam).startswith("Pending: 1 of 2")

    viii = [anam, _scored("unet", "unet", 0.66)]
    same = [_scored("anamnet", "anamnet", 0.63), _scored("unet", "unet", 0.62)]
    assert render.rotation_note(viii, same).endswith("The order holds.")
    swapped = [_scored("anamnet", "anamnet", 0.63), _scored("unet", "unet", 0.65)]
    note = render.rotation_note(viii, swapped)
    assert "anamnet 0.6800 / 0.6300" in note and "on the rotation mean: unet, anamnet" in note
    assert "The order changes" in note
