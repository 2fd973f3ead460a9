"""medseg100: the MedSeg slices (Inf-Net's 50 train / 48 test split) with GGO/consolidation labels.

The pictures are stored rotated a quarter turn (anterior on the left); they are turned back to
the usual axial view, and halved in size to ma20's scale (they are ~300-px crops of 512-px
slices). No lung masks are provided: lungs come from covseg's picture lung extractor, joined
with the labelled lesions, so the labels are Anam-Net's 0 / 1 abnormal / 2 normal lung.
Test slices are masked by the extractor alone unless `oracle_test_lungs` asks for the join.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from covseg.data.ma20 import SliceSet, labels_from_masks
from covseg.data.root import require_dataset
from covseg.intensity import Intensity
from covseg.lungs import extract_lungs_display

SCALE = 0.5


def _load_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = Image.open(image_path).convert("L")
    size = (max(16, round(img.width * SCALE)), max(16, round(img.height * SCALE)))
    image = np.rot90(np.asarray(img.resize(size, Image.BILINEAR)), k=-1)
    mask = np.rot90(np.asarray(Image.open(mask_path).resize(size, Image.NEAREST)), k=-1)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def load_medseg100(split: str = "test", data_root: str | Path | None = None,
                   truth_in_lungs: bool | None = None) -> SliceSet:
    """Slices of one split ('train' or 'test'), padded to a common size with background.

    The lung mask (what the model's input is multiplied by, and where it may call anything)
    comes from the picture lung extractor, which misses dense lesions against the pleura.
    `truth_in_lungs` joins the reference lesions to it: right for training, an oracle for
    testing; by default only the training split gets it. The labels always count every
    reference lesion, so a lesion outside the extracted lungs is a miss.
    """
    if truth_in_lungs is None:
        truth_in_lungs = split == "train"
    root = require_dataset("medseg100", data_root) / split
    names = sorted((root / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    pairs = [_load_pair(p, root / "masks" / f"{p.stem}.png") for p in names]
    h = max(im.shape[0] for im, _ in pairs)
    w = max(im.shape[1] for im, _ in pairs)
    images = np.zeros((len(pairs), h, w), np.uint8)
    lungs = np.zeros((len(pairs), h, w), bool)
    labels = np.zeros((len(pairs), h, w), np.uint8)
    for i, (image, mask) in enumerate(pairs):
        ih, iw = image.shape
        lesion = mask > 0
        extracted = extract_lungs_display(image[None].astype(np.float32))[0] > 0
        images[i, :ih, :iw] = image
        lungs[i, :ih, :iw] = extracted | lesion if truth_in_lungs else extracted
        labels[i, :ih, :iw] = labels_from_masks(extracted | lesion, lesion)
    return SliceSet(images, lungs, labels, [f"medseg100/{split}/{p.stem}" for p in names],
                    Intensity.DISPLAY)
