"""The plan of `covseg paper`: one protocol, one equal budget, and which networks each table trains.

Every run is the protocol's config with only the model, the data and (for the ablations) the
loss or model arguments changed, so two tables that need the same run share it by its hash.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from covseg.errors import InputError
from covseg.train.config import DataConfig, TrainConfig, config_from_dict

DEFAULT_PLAN = Path("configs/paper/protocol.yaml")
TABLES = ("IV", "VII", "VIII", "IX", "X", "XI", "thesis")
MA20_F4 = {"dataset": "ma20", "train_folds": [1, 2, 3], "test_folds": [4]}
MEDSEG = {"dataset": "medseg100"}
RECORDS = 30  # log records a run writes (the loss curve); the budget is split into this many


@dataclass
class Plan:
    protocol: dict
    budget_steps: int
    networks: list[str]
    table_vii: list[str]
    rotation: dict = field(default_factory=lambda: {"always": ["anamnet", "unet"], "best_baselines": 2})
    thesis: list[str] = field(default_factory=list)
    thesis_losses: list[str] = field(default_factory=lambda: ["ce_weighted"])
    perturbation: dict = field(default_factory=dict)
    table_iv: dict = field(default_factory=lambda: {"size": 512, "latency": True})
    max_slices: int | None = None  # every data set cut to this many slices (smoke tests)

    def __post_init__(self) -> None:
        if self.budget_steps < 3 or self.budget_steps % 3:
            raise InputError(f"budget {self.budget_steps}: give a multiple of 3 steps (the "
                             "schedule decays at 1/3 and 2/3 of the run)")
        stray = set(self.perturbation.get("models", [])) - set(self.networks)
        if stray:  # Table XI perturbs Table VIII's trained runs, scored while their weights exist
            raise InputError(f"perturbation models {', '.join(sorted(stray))} are not among the "
                             "plan's networks; Table XI perturbs Table VIII's runs")


def load_plan(path: str | Path = DEFAULT_PLAN, budget: int | None = None,
              max_slices: int | None = None) -> Plan:
    """The plan file, with the command line's budget and data cut laid over it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"plan file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - {f.name for f in fields(Plan)}
    if unknown:
        raise InputError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    if budget is not None:
        raw["budget_steps"] = budget
    if max_slices is not None:
        raw["max_slices"] = max_slices
    return Plan(**raw)


def schedule(budget: int) -> dict:
    """Epochs, steps per epoch and decay period that spend `budget` steps with the paper's shape
    (its 100 epochs decayed every 33: here x0.1 after each third)."""
    records = next(k for k in range(RECORDS, 2, -3) if budget % k == 0)
    return {"epochs": records, "steps_per_epoch": budget // records, "step_epochs": records // 3}


def run_config(plan: Plan, model: str, data: dict, **changes) -> TrainConfig:
    """The protocol's config for one run: `model` on `data`, with `changes` (loss, model_args)."""
    values = copy.deepcopy(plan.protocol)
    values["data"] = {**values.get("data", {}), **data, "max_slices": plan.max_slices}
    values.update(model=model, name=model, **schedule(plan.budget_steps), **changes)
    return config_from_dict(values)


def test_data(plan: Plan, data: dict) -> DataConfig:
    """The held-out data a run is scored on, prepared as the protocol prepares its inputs."""
    base = {k: v for k, v in plan.protocol.get("data", {}).items() if k == "mask_lungs"}
    return DataConfig(**{**base, **data, "max_slices": plan.max_slices})


def rotation_data(fold: int) -> dict:
    """The paper's 3-fold rotation inside folds 1-3: train on the other two, test on `fold`."""
    return {"dataset": "ma20", "train_folds": [f for f in (1, 2, 3) if f != fold], "test_folds": [fold]}
