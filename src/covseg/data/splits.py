"""Train/val/test splits by patient: k folds or a held-out count drawn with a seed, or a file.

A patient's cases are always on one side, so no patient is both trained and tested on. `val`
patients, drawn from the training side, are held out for early stopping.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from covseg.data.layouts import Case
from covseg.errors import InputError

SIDES = ("train", "val", "test")


@dataclass
class Split:
    folds: int = 5  # k-fold by patient; fold `fold` is the test set
    fold: int = 0
    test: int | None = None  # instead: this many patients held out (e.g. the thesis' 10 of 50)
    val: int = 0  # patients of the training side held out for early stopping (the thesis' 5)
    seed: int = 0
    file: str | None = None  # YAML/JSON: {train: [..], test: [..]} or {fold: {patient: fold}}

    def __post_init__(self) -> None:
        if not 0 <= self.fold < max(self.folds, 1) and self.file is None:
            raise InputError(f"split.fold {self.fold} is not one of 0..{self.folds - 1}")


def _from_file(path: Path, split: Split) -> dict[str, str]:
    """{patient: 'train' | 'val' | 'test'} from a split file."""
    if not path.is_file():
        raise InputError(f"split file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise InputError(f"{path}: not valid YAML/JSON; fix the split file") from None
    if isinstance(raw, dict) and isinstance(raw.get("fold"), dict):
        return {str(p): "test" if int(f) == split.fold else "train" for p, f in raw["fold"].items()}
    if isinstance(raw, dict) and set(raw) <= set(SIDES) and "test" in raw:
        sides: dict[str, str] = {}
        for side in SIDES:
            for patient in raw.get(side) or []:
                if sides.setdefault(str(patient), side) != side:
                    raise InputError(f"{path}: patient '{patient}' is in both {sides[str(patient)]} "
                                     f"and {side}")
        return sides
    raise InputError(f"{path}: a split file holds 'train', 'test' (and 'val') lists of patients, "
                     "or 'fold': {patient: fold number}")


def assign(cases: list[Case], split: Split, root: Path | None = None) -> dict[str, str]:
    """{patient: 'train' | 'val' | 'test'} for every patient of `cases` (a seeded shuffle)."""
    patients = sorted({c.patient for c in cases})
    if split.file is not None:
        path = Path(split.file)
        if not path.is_absolute() and root is not None and not path.is_file():
            path = root / path
        sides = _from_file(path, split)
        absent = sorted(set(patients) - set(sides))
        if absent:
            raise InputError(f"{path}: no side for patient(s) {', '.join(absent[:5])}"
                             f"{' ...' if len(absent) > 5 else ''}; list every patient")
        return _hold_out_val({p: sides[p] for p in patients}, split)
    order = [patients[i] for i in np.random.default_rng(split.seed).permutation(len(patients))]
    if split.test is not None:
        if not 0 < split.test < len(patients):
            raise InputError(f"split.test: {split.test} patients cannot be held out of {len(patients)}")
        test = set(order[:split.test])
    else:
        if split.folds < 2 or split.folds > len(patients):
            raise InputError(f"split.folds: {split.folds} folds need 2..{len(patients)} patients")
        test = set(order[split.fold::split.folds])
    return _hold_out_val({p: "test" if p in test else "train" for p in order}, split)


def _hold_out_val(sides: dict[str, str], split: Split) -> dict[str, str]:
    """The first `split.val` training patients of a seeded shuffle become validation patients."""
    if not split.val:
        return dict(sorted(sides.items()))
    train = [p for p, s in sides.items() if s == "train"]
    if split.val >= len(train):
        raise InputError(f"split.val: {split.val} patients cannot be held out of {len(train)} "
                         "training patients")
    order = [train[i] for i in np.random.default_rng([split.seed, 1]).permutation(len(train))]
    return dict(sorted({**sides, **{p: "val" for p in order[:split.val]}}.items()))
