"""The run cache of `covseg paper`: each training run and each score kept under its config's hash.

A run lives in ROOT/<model>-<hash of its config>/ (the trainer's folder: metrics.jsonl, model.pt,
plus model.json naming the architecture and the machine it was trained on); a stopped run
resumes from its checkpoint (last.pt, dropped once the run is finished) and a finished one is
never trained again. Scores are cached in the run's folder under the hash of the test data, so
rendering the tables afterwards costs no network time. The small records (logs, scores,
model.json) are committed with the repository and outlive the machine; the weights are not
(git ignores `*.pt`), so a score is computed while its run's weights are on this machine and a
run is trained again only when a score it lacks is asked for. With `execute` False nothing is
trained or scored: what is missing comes back as None ("pending") and is noted in `wants`, so
`covseg paper` can learn what a table set still needs before it fills it (covseg.paper.reproduce).
"""
from __future__ import annotations

import hashlib
import datetime
import json
import time
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from pathlib import Path

from covseg.evaluate import evaluate_model
from covseg.infer import LesionSegmenter
from covseg.paper.perturb import perturbed_scores
from covseg.runtime import machine_description
from covseg.train import train
from covseg.train.config import DataConfig, TrainConfig
from covseg.train.callbacks import CHECKPOINT, LOG, WEIGHTS

EVAL_PRECISION = "fp32"  # every score in the reference arithmetic, whatever a run trained in


def digest(values: object) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def changed(obj: object) -> dict:
    """The fields of a config dataclass that differ from their defaults (nested ones likewise).

    Keys are built from these alone, so a new setting added with a default that keeps the old
    behaviour leaves every cached run and score where it is.
    """
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            if sub := changed(value):
                out[f.name] = sub
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        if value != default:
            out[f.name] = value
    return out


def config_hash(cfg: TrainConfig) -> str:
    """What decides a run's result: its changed settings less the display name and thread count."""
    values = changed(cfg)
    for key in ("name", "threads"):
        values.pop(key, None)
    return digest(values)


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


@dataclass
class Want:
    """A score a table asked for that the cache lacks: the run, and the RunCache call (`kind`,
    "scores" or "perturbed", with its arguments after the config) that fills it."""

    cfg: TrainConfig
    kind: str
    args: tuple


class RunCache:
    def __init__(self, root: str | Path, execute: bool = True, progress: bool = True):
        self.root, self.execute, self.progress = Path(root), execute, progress
        self.wants: list[Want] = []

    def folder(self, cfg: TrainConfig) -> Path:
        return self.root / f"{cfg.model.replace('+', 'p')}-{config_hash(cfg)}"

    def weights(self, cfg: TrainConfig) -> Path | None:
        """The trained weights of `cfg`: trained (or resumed) here when missing and executing.

        Without a checkpoint the run starts over, dropping the log a stopped run left behind on
        another machine (its checkpoint did not travel with the records).
        """
        out = self.folder(cfg)
        path = out / WEIGHTS
        if not path.is_file():
            if not self.execute:
                return None
            cfg.name = out.name
            resume = (out / CHECKPOINT).is_file()
            train(cfg, out, resume=resume, force=not resume, progress=self.progress)
            _write_json(path.with_suffix(".json"), {  # what load_model builds the network from
                "name": out.name, "model": cfg.model, "model_args": cfg.model_args,
                "trained_on": asdict(cfg.data), "machine": machine_description(),
                "finished": datetime.date.today().isoformat()})
        (out / CHECKPOINT).unlink(missing_ok=True)  # finished: Adam's moments triple the weights
        return path

    def machine(self, cfg: TrainConfig) -> str | None:
        """The machine the run was trained on, its GPU too (None before it has finished)."""
        path = (self.folder(cfg) / WEIGHTS).with_suffix(".json")  # written beside the weights
        return json.loads(path.read_text()).get("machine") if path.is_file() else None

    def log(self, cfg: TrainConfig) -> list[dict]:
        """The run's metrics.jsonl records (empty before it has started)."""
        path = self.folder(cfg) / LOG
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _cached(self, cfg: TrainConfig, kind: str, key: object, compute, want: Want) -> dict | None:
        path = self.folder(cfg) / f"{kind}-{digest(key)}.json"
        if path.is_file():
            return json.loads(path.read_text())
        if not self.execute:
            self.wants.append(want)
            return None
        weights = self.weights(cfg)
        if weights is None:
            return None
        t0 = time.perf_counter()
        record = compute(LesionSegmenter(weights, backend="torch", precision=EVAL_PRECISION))
        record.update(test=key, seconds=round(time.perf_counter() - t0, 1))
        _write_json(path, record)
        return record

    def scores(self, cfg: TrainConfig, test: DataConfig, limit: int | None = None) -> dict | None:
        """Per-class figures of the run on `test`: per slice (mean) and pooled, covseg's evaluator."""
        def compute(segmenter: LesionSegmenter) -> dict:
            ev = evaluate_model(data=test, limit=limit, segmenter=segmenter)
            return {"slices": len(ev.rows), "per_slice": ev.mean_per_slice(), "pooled": ev.pooled()}
        return self._cached(cfg, "eval", {"data": changed(test), "limit": limit}, compute,
                            Want(cfg, "scores", (test, limit)))

    def perturbed(self, cfg: TrainConfig, test: DataConfig, etas: list[float], draws: int,
                  limit: int | None) -> dict | None:
        """Table XI's scores of the run with its weights perturbed (covseg.paper.perturb)."""
        key = {"data": changed(test), "limit": limit, "etas": etas, "draws": draws}
        return self._cached(cfg, "perturb", key, lambda seg: {
            "etas": perturbed_scores(seg, test, etas, draws, limit)},
            Want(cfg, "perturbed", (test, etas, draws, limit)))
