"""Data sets by name, as the experiment configs refer to them."""
from __future__ import annotations

import numpy as np

from covseg.data.layouts import LAYOUTS
from covseg.data.ma20 import SliceSet, load_ma20
from covseg.errors import InputError

DATASETS = ("ma20", "medseg100", *LAYOUTS)
TARGETS = {"lesions": 3, "lungs": 2}  # number of classes a target has


def num_classes(data) -> int:
    if data.target not in TARGETS:
        raise InputError(f"unknown target '{data.target}'; choose one of: {', '.join(TARGETS)}")
    return TARGETS[data.target]


def training_arrays(data, slices: SliceSet, scale: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enhanced whole slices, lung masks and label maps (0 / 1 abnormal / 2 normal lung), zoomed
    in-plane by `scale`. The lung masking is left to the augmentation, so it follows the lungs
    through every transform. The lung model's loss reads lung = label > 0 (and may weigh the
    abnormal pixels: covseg.train.losses.LungTarget)."""
    from covseg.preprocess.contract import enhance
    from covseg.preprocess.resample import model_plane_size, resize_planes

    images = np.stack([enhance(im, slices.intensity) for im in slices.images])
    lungs = slices.lungs.astype(np.uint8)
    labels = slices.labels
    if scale != 1.0:
        size = model_plane_size(images.shape[1:], scale)
        images = resize_planes(images, size)
        lungs, labels = (resize_planes(a, size, labels=True) for a in (lungs, labels))
    return images, lungs, labels


def training_data(data, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`training_arrays` of the training slices, with `data.extra` joined (as pictures framed for
    the model `data.target` trains): its slices repeated so
    that about `extra_share` of the samples drawn come from it (40 pictures beside 1,210 slices
    would otherwise be 3 % of them)."""
    arrays = training_arrays(data, load_training_set(data), scale)
    if data.extra is None:
        return arrays
    from covseg.data.medseg import load_medseg100_pictures

    pictures = load_medseg100_pictures("train", data.target, data.root)
    extra = training_arrays(data, pictures, scale)
    n, m = len(arrays[0]), len(extra[0])
    repeat = max(1, round(data.extra_share * n / ((1.0 - data.extra_share) * m)))
    return tuple(np.concatenate([a, np.tile(b, (repeat, 1, 1))]) for a, b in zip(arrays, extra))


def model_inputs(slices: SliceSet, data) -> np.ndarray:
    """The network's inputs for held-out slices, prepared exactly as inference prepares scans
    (scoring, tuning and early stopping all see what a user's scan would give)."""
    from covseg.preprocess.contract import model_input

    return np.stack([model_input(im, lu, slices.intensity, data.mask_lungs)
                     for im, lu in zip(slices.images, slices.lungs)])


def load_training_set(data) -> SliceSet:
    """The training slices a `DataConfig` names."""
    return _load(data, data.train_folds, data.source, split="train")


def load_test_set(data) -> SliceSet:
    """The held-out slices a `DataConfig` names (ma20's test folds, medseg100's test split)."""
    return _load(data, data.test_folds, data.test_source or data.source, split="test")


def load_validation_set(data) -> SliceSet:
    """The validation patients of a user's data set (`data.split.val`), for early stopping."""
    if data.dataset not in LAYOUTS or not data.split.val:
        raise InputError("early stopping needs validation patients: a user's data set "
                         f"({', '.join(LAYOUTS)}) with data.split.val > 0")
    return _load_volumes(data, "val")


def _load(data, folds, source, split: str) -> SliceSet:
    if data.dataset in LAYOUTS:
        return _load_volumes(data, split)
    if data.dataset == "ma20":
        return load_ma20(folds=folds, source=source, data_root=data.root, limit=data.max_slices)
    if data.dataset == "medseg100":
        from covseg.data.medseg import load_medseg100
        oracle = data.oracle_test_lungs if split == "test" else True
        slices = load_medseg100(split, data_root=data.root, truth_in_lungs=oracle)
        return slices.spread(data.max_slices) if data.max_slices else slices
    raise InputError(f"unknown dataset '{data.dataset}'; choose one of: {', '.join(DATASETS)}")


def _load_volumes(data, split: str) -> SliceSet:
    """One side of a user's data set: every case is read and checked first (cached)."""
    from pathlib import Path

    from covseg.data.splits import assign
    from covseg.data.volumes import load_all, slice_set

    cases, arrays = load_all(data)
    sides = assign(cases, data.split, Path(data.path))
    chosen = [a for c, a in zip(cases, arrays) if sides[c.patient] == split]
    if not chosen:
        raise InputError(f"the split leaves no {split} cases; check data.split")
    slices = slice_set(chosen, data, "test" if split == "val" else split)
    return slices.spread(data.max_slices) if data.max_slices else slices
