"""What each table needs, gathered from the run cache: rows of (run, scores, training log).

Each `collect_*` trains and scores what is missing when the cache executes, and only reads it
otherwise, so the same functions fill the tables and render them half-filled ("pending").
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from covseg.models import build_model
from covseg.evaluate.profile import count_parameters
from covseg.paper.cache import RunCache, digest
from covseg.paper.plan import MA20_F4, MEDSEG, Plan, rotation_data, run_config, test_data
from covseg.paper.timing import step_time_rows
from covseg.train.config import TrainConfig


@functools.lru_cache(maxsize=None)
def params_m(model: str, args: str = "{}") -> float:
    return count_parameters(build_model(model, **json.loads(args))) / 1e6


@dataclass
class Row:
    label: str
    cfg: TrainConfig
    scores: dict | None
    log: list[dict] = field(default_factory=list)

    @property
    def params_m(self) -> float:
        return params_m(self.cfg.model, json.dumps(self.cfg.model_args, sort_keys=True))

    def value(self, cls: str = "abnormal", metric: str = "dice", avg: str = "per_slice") -> float | None:
        return None if self.scores is None else self.scores[avg][cls][metric]

    @property
    def train_s(self) -> float | None:
        """Training wall time, from the run's last log record (resumed runs count every piece)."""
        return self.log[-1]["elapsed_s"] if self.log else None


def _row(cache: RunCache, label: str, cfg: TrainConfig, test: dict, plan: Plan,
         limit: int | None = None) -> Row:
    scores = cache.scores(cfg, test_data(plan, test), limit)
    return Row(label, cfg, scores, cache.log(cfg))


def collect_viii(plan: Plan, cache: RunCache) -> list[Row]:
    """Table VIII: every network, ma20 folds 1-3 -> fold 4."""
    return [_row(cache, m, run_config(plan, m, MA20_F4), MA20_F4, plan) for m in plan.networks]


def rotation_models(plan: Plan, viii: list[Row]) -> list[str] | None:
    """Anam-Net, U-Net and the best baselines of Table VIII (None until all are scored)."""
    always = list(plan.rotation.get("always", []))
    others = [r for r in viii if r.label not in always]
    if any(r.scores is None for r in others):
        return None
    best = sorted(others, key=lambda r: -r.value())[:plan.rotation.get("best_baselines", 0)]
    return always + [r.label for r in best]


def collect_rotation(plan: Plan, cache: RunCache, viii: list[Row]) -> dict[str, list[Row]] | None:
    """The 3-fold rotation inside folds 1-3, for the networks `rotation_models` names."""
    models = rotation_models(plan, viii)
    if models is None:
        return None
    return {m: [_row(cache, f"{m} F{k}", run_config(plan, m, rotation_data(k)), rotation_data(k), plan)
                for k in (1, 2, 3)] for m in models}


def collect_vii(plan: Plan, cache: RunCache) -> list[Row]:
    """Table VII (Exp 1 analogue): MedSeg train -> MedSeg test."""
    return [_row(cache, m, run_config(plan, m, MEDSEG), MEDSEG, plan) for m in plan.table_vii]


def collect_ix(plan: Plan, cache: RunCache) -> list[Row]:
    """Table IX (Exp 3): the Table VIII models, never shown MedSeg, on MedSeg's test split."""
    return [_row(cache, m, run_config(plan, m, MA20_F4), MEDSEG, plan) for m in plan.networks]


X_VARIANTS = {  # label -> (model_args, loss); None: the protocol's loss
    "AD blocks, weighted CE": ({}, None),
    "AD blocks, plain CE": ({}, "ce"),
    "no AD blocks, weighted CE": ({"ad_blocks": False}, None),
    "no AD blocks, plain CE": ({"ad_blocks": False}, "ce"),
}


def collect_x(plan: Plan, cache: RunCache) -> list[Row]:
    """Table X: Anam-Net with and without AD blocks, with and without label weighting."""
    rows = []
    for label, (args, loss) in X_VARIANTS.items():
        changes = {"model_args": args, **({"loss": loss} if loss else {})}
        rows.append(_row(cache, label, run_config(plan, "anamnet", MA20_F4, **changes), MA20_F4, plan))
    return rows


def collect_xi(plan: Plan, cache: RunCache) -> dict[str, dict | None]:
    """Table XI: the Table VIII Anam-Net and U-Net, perturbed (covseg.paper.perturb)."""
    p = plan.perturbation
    test = test_data(plan, MA20_F4)
    return {m: cache.perturbed(run_config(plan, m, MA20_F4), test, list(p["etas"]), p["draws"],
                               p.get("slices")) for m in p.get("models", [])}


def collect_thesis(plan: Plan, cache: RunCache) -> list[Row]:
    """The thesis' encoder U-Nets, from scratch, under the protocol, with each loss it names."""
    return [_row(cache, f"{m}, {loss}", run_config(plan, m, MA20_F4, loss=loss), MA20_F4, plan)
            for m in plan.thesis for loss in plan.thesis_losses]


def _cached_file(path: Path, execute: bool, make) -> str | None:
    if path.is_file():
        return path.read_text()
    if not execute:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    text = make()
    path.write_text(text)
    return text


def collect_iv(plan: Plan, cache: RunCache) -> str | None:
    """Table IV as `covseg models` prints it, measured once on this machine."""
    from covseg.evaluate.profile import model_table

    names = [*plan.networks, *plan.thesis]
    size, latency = plan.table_iv.get("size", 512), plan.table_iv.get("latency", True)
    path = cache.root / f"table_iv-{digest([names, size, latency])}.txt"
    return _cached_file(path, cache.execute, lambda: model_table(names, size=size, latency=latency))


def collect_step_times(plan: Plan, cache: RunCache) -> list[dict] | None:
    """Seconds a training step of the protocol's batch, for every network (covseg.paper.timing)."""
    names = [*plan.networks, *plan.thesis]
    batch, crop = plan.protocol.get("batch_size", 8), plan.protocol.get("crop") or 256
    path = cache.root / f"step_times-{digest([names, batch, crop])}.json"
    text = _cached_file(path, cache.execute,
                        lambda: json.dumps(step_time_rows(names, batch, crop), indent=2))
    return None if text is None else json.loads(text)
