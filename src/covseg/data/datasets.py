"""Data sets by name, as the experiment configs refer to them."""
from __future__ import annotations

import numpy as np

from covseg.data.ma20 import SliceSet, load_ma20
from covseg.errors import InputError

DATASETS = ("ma20", "medseg100")
TARGETS = {"lesions": 3, "lungs": 2}  # number of classes a target has


def num_classes(data) -> int:
    if data.target not in TARGETS:
        raise InputError(f"unknown target '{data.target}'; choose one of: {', '.join(TARGETS)}")
    return TARGETS[data.target]


def training_arrays(data, slices: SliceSet, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and labels for a target: lesion maps on lung-masked slices, or lung masks
    on whole slices; zoomed in-plane by `scale`."""
    from covseg.infer.preprocess import model_input
    from covseg.infer.resample import model_plane_size, resize_planes

    lungs_target = data.target == "lungs"
    images = np.stack([model_input(im, lu, slices.intensity, data.mask_lungs and not lungs_target)
                       for im, lu in zip(slices.images, slices.lungs)])
    labels = slices.lungs.astype(np.uint8) if lungs_target else slices.labels
    if scale != 1.0:
        size = model_plane_size(images.shape[1:], scale)
        images = resize_planes(images, size)
        labels = resize_planes(labels, size, labels=True)
    return images, labels


def load_training_set(data) -> SliceSet:
    """The training slices a `DataConfig` names."""
    return _load(data, data.train_folds, data.source, split="train")


def load_test_set(data) -> SliceSet:
    """The held-out slices a `DataConfig` names (ma20's test folds, medseg100's test split)."""
    return _load(data, data.test_folds, data.test_source or data.source, split="test")


def _load(data, folds, source, split: str) -> SliceSet:
    if data.dataset == "ma20":
        return load_ma20(folds=folds, source=source, data_root=data.root, limit=data.max_slices)
    if data.dataset == "medseg100":
        from covseg.data.medseg import load_medseg100
        oracle = data.oracle_test_lungs if split == "test" else True
        slices = load_medseg100(split, data_root=data.root, truth_in_lungs=oracle)
        return slices.spread(data.max_slices) if data.max_slices else slices
    raise InputError(f"unknown dataset '{data.dataset}'; choose one of: {', '.join(DATASETS)}")
