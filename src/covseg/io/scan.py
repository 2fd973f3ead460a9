"""The one in-memory form of every input: `Scan`.

Axis order, everywhere in covseg: `array[z, y, x]` with z the axial slice index running from the
patient's feet to head (inferior -> superior), y the image row running anterior -> posterior and
x the image column running from the patient's right to left. This is the radiological display
of an axial slice (patient's right on the image's left) and ITK's LPS convention. 2-D inputs are
one slice, `array.shape == (1, H, W)`, kept as they were drawn (no reorientation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covseg.intensity import Intensity


@dataclass
class Geometry:
    """How to put a (z, y, x) result back where the source's voxels were.

    kind "nifti": `affine`, `header` and `to_source` (nibabel orientation transform from our LPS
    order back to the file's axes). kind "itk": the LPS-oriented SimpleITK reference image in
    `itk_reference` and the file's orientation code in `source_orientation`. kind "plane": a 2-D
    picture or array; results are written as PNG of `shape`.
    """

    kind: str
    affine: np.ndarray | None = None
    header: Any = None
    to_source: np.ndarray | None = None
    itk_reference: Any = None
    source_orientation: str | None = None


@dataclass
class Scan:
    """Voxels, their meaning and their place: what every reader returns."""

    array: np.ndarray  # (z, y, x) float32
    spacing: tuple[float, float, float]  # (z, y, x) in mm
    intensity: Intensity
    geometry: Geometry
    source: Path
    format: str  # nifti | dicom-series | dicom | picture | mat | npy
    modality: str | None = None
    spacing_known: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def is_volume(self) -> bool:
        return self.array.shape[0] > 1

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def is_hu(self) -> bool:
        return self.intensity is Intensity.HU
