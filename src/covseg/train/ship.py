"""Turn a finished training run into shipped weights: the state dict plus a metadata file.

The metadata (same name, .json) records what the weights are, what they were trained on, how,
what they scored, where they were trained (the machines the run's log names), the sha256 of the
weights a fine-tuned run started from, and their own sha256, so a report can say which model
produced it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from covseg.data.datasets import TARGETS
from covseg.errors import InputError
from covseg.infer.postprocess import PostProcess
from covseg.models.weights import sha256
from covseg.io.writers import atomic_write
from covseg.lungs.learned import LUNG_THRESHOLD


def ship(run_dir: str | Path, dest: str | Path, trained_on: str, metrics: dict,
         force: bool = False, threshold: float | None = None,
         margin: float | None = None) -> Path:
    """Copy `run_dir/model.pt` to `dest` and write `dest.json` beside it.

    `threshold` (lung models only): the lung probability above which a pixel is lung, chosen on
    a held-out fold after training, so it belongs to these weights, not to the code. `margin`
    (lesion models only): the decision margin chosen for these weights after training
    (`covseg tune`, benchmarks/match_calls.py), kept as their post-processing.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    missing = [n for n in ("model.pt", "config.json", "metrics.jsonl") if not (run_dir / n).is_file()]
    if missing:
        raise InputError(f"{run_dir} is not a finished training run (no {', '.join(missing)}); "
                         "train it to the end (or --resume it) first")
    config = json.loads((run_dir / "config.json").read_text())
    target = config["data"].get("target", "lesions")
    if threshold is not None and (target != "lungs" or not 0 < threshold < 1):
        raise InputError(f"--threshold is a lung model's probability cut between 0 and 1; this "
                         f"run's target is {target}")
    if margin is not None and target != "lesions":
        raise InputError(f"--margin is a lesion model's decision margin; this run's target is {target}")
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    atomic_write(dest, lambda tmp: shutil.copyfile(run_dir / "model.pt", tmp), force)
    machines = list(dict.fromkeys(rec["machine"] for rec in log if "machine" in rec))
    model_args = {**config["model_args"], "num_classes": TARGETS[target]}
    meta = {"name": dest.stem, "model": config["model"], "model_args": model_args,
            "trained_on": trained_on, "config": config, "train_wall_s": log[-1]["elapsed_s"],
            "train_steps": log[-1]["step"], "metrics": metrics,
            "trained_where": "; ".join(machines) or "not recorded by the run's log",
            "sha256": sha256(dest)}
    if config.get("init"):  # a fine-tuned run: which start, by content
        init = Path(config["init"])
        meta["init_sha256"] = sha256(init) if init.is_file() else "not found when shipped"
    if margin is not None:
        meta["postprocess"] = PostProcess(margin=margin).as_dict()
    if target == "lungs":
        meta["threshold"] = LUNG_THRESHOLD if threshold is None else threshold
    atomic_write(dest.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)),
                 force)
    return dest
