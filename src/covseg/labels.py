"""The label maps every part of covseg speaks, defined once: classes, colours, lung sides.

Lesion maps use Anam-Net's three classes; lung maps tell the two lungs apart. Patient's right
is on the image's left (low x), as radiologists view an axial slice.
"""
from __future__ import annotations

from enum import IntEnum


class Label(IntEnum):
    """Classes of a lesion map (lesions.nii.gz)."""

    BACKGROUND = 0  # outside the lungs
    ABNORMAL = 1  # ground glass + consolidation + effusion
    NORMAL = 2  # normal lung


class Side(IntEnum):
    """Values of a lung map (lungs.nii.gz)."""

    NONE = 0
    RIGHT = 1
    LEFT = 2


BACKGROUND, ABNORMAL, NORMAL = Label.BACKGROUND, Label.ABNORMAL, Label.NORMAL
RIGHT, LEFT = Side.RIGHT, Side.LEFT

COLOURS = {ABNORMAL: (230, 30, 30), NORMAL: (40, 200, 60)}  # red and green, as in Anam-Net's figures
