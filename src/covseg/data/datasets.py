"""Data sets by name, as the experiment configs refer to them."""
from __future__ import annotations

from covseg.data.ma20 import SliceSet, load_ma20
from covseg.errors import InputError

NUM_CLASSES = 3
DATASETS = ("ma20", "medseg100")


def load_training_set(data) -> SliceSet:
    """The training slices a `DataConfig` names."""
    return _load(data, data.train_folds, split="train")


def load_test_set(data) -> SliceSet:
    """The held-out slices a `DataConfig` names (ma20's test folds, medseg100's test split)."""
    return _load(data, data.test_folds, split="test")


def _load(data, folds, split: str) -> SliceSet:
    if data.dataset == "ma20":
        return load_ma20(folds=folds, source=data.source, data_root=data.root)
    if data.dataset == "medseg100":
        from covseg.data.medseg import load_medseg100
        return load_medseg100(split, data_root=data.root)
    raise InputError(f"unknown dataset '{data.dataset}'; choose one of: {', '.join(DATASETS)}")
