"""ma20: Ma et al.'s 20 COVID-19 CT scans as 1,614 slices with lung and infection masks.

Labels follow Anam-Net: 0 outside the lungs, 1 abnormal (infection inside the lungs), 2 normal lung.
Folds come from the data set's `blocks.csv`, which keeps every patient inside one fold.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from covseg.data.root import require_dataset
from covseg.intensity import Intensity
from covseg.labels import ABNORMAL, NORMAL


@dataclass
class SliceSet:
    """Slices held in memory: images, lung masks, label maps and where each came from.

    Slices cut from a user's volumes (covseg.data.volumes) also say which case each belongs to,
    and `case_info` what each case is (files, lung source, voxel volume), for per-case scores.
    """

    images: np.ndarray  # (N, H, W) uint8, or float32 network inputs (Intensity.PREPARED)
    lungs: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N, H, W) uint8, 0/1/2
    ids: list[str]
    intensity: Intensity
    cases: list[str] | None = None  # the case of each slice
    case_info: dict[str, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def spread(self, count: int) -> "SliceSet":
        """`count` slices evenly spaced through the set (all of them if it holds fewer)."""
        return self.subset(np.linspace(0, len(self) - 1, min(count, len(self))).astype(int))

    def subset(self, index: np.ndarray | list[int]) -> "SliceSet":
        index = np.asarray(index, dtype=int)
        return SliceSet(self.images[index], self.lungs[index], self.labels[index],
                        [self.ids[i] for i in index], self.intensity,
                        None if self.cases is None else [self.cases[i] for i in index], self.case_info)


def labels_from_masks(lungs: np.ndarray, infection: np.ndarray) -> np.ndarray:
    """Anam-Net's 3-class map: infection counts only inside the lungs."""
    labels = np.zeros(lungs.shape, dtype=np.uint8)
    labels[lungs] = NORMAL
    labels[lungs & infection] = ABNORMAL
    return labels


def read_blocks(root: Path) -> list[dict]:
    with open(root / "blocks.csv", newline="") as fh:
        return [{k: (v if k == "source" else int(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def slice_indices(folds: list[int] | None = None, source: str | None = None,
                  data_root: str | Path | None = None) -> list[int]:
    """Indices of the slices in the given folds (1-4) and/or source (coronacases, radiopaedia)."""
    root = require_dataset("ma20", data_root)
    out: list[int] = []
    for b in read_blocks(root):
        if folds is not None and b["fold"] not in folds:
            continue
        if source is not None and b["source"] != source:
            continue
        out.extend(range(b["first_index"], b["last_index"] + 1))
    return out


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def load_ma20(folds: list[int] | None = None, source: str | None = None,
              data_root: str | Path | None = None, limit: int | None = None) -> SliceSet:
    """Load ma20 slices of the given folds into memory (about 200 KB a slice)."""
    root = require_dataset("ma20", data_root)
    idx = slice_indices(folds, source, data_root)
    if limit is not None:
        idx = idx[:: max(1, len(idx) // limit)][:limit]
    images, lungs, labels = [], [], []
    for i in idx:
        name = f"{i:04d}.png"
        lung = _read(root / "lungs" / name) > 0
        inf = _read(root / "covid" / name) > 0
        images.append(_read(root / "ct" / name))
        lungs.append(lung)
        labels.append(labels_from_masks(lung, inf))
    return SliceSet(np.stack(images), np.stack(lungs), np.stack(labels),
                    [f"ma20/{i:04d}" for i in idx], Intensity.ENHANCED)
