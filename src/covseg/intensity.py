"""What the numbers of a slice mean, in a module without heavy imports.

Readers, the QA and the model contract all need this enum; keeping it here lets `covseg info`
and the CLI's refusals run without loading OpenCV, torch or MONAI.
"""
from __future__ import annotations

from enum import Enum


class Intensity(str, Enum):
    """What the numbers of a slice mean."""

    HU = "hu"  # Hounsfield units from CT (NIfTI, DICOM)
    DISPLAY = "display"  # an 8-bit or otherwise windowed picture
    ENHANCED = "enhanced"  # already min-max scaled and CLAHE-enhanced, 0..255 (ma20)
    PREPARED = "prepared"  # already the network's input: a training recipe ran (covseg.data.recipes)
