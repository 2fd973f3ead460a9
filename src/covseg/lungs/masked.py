"""Pictures that are lung-masked already: the lungs on one flat background grey.

The Anam-Net paper feeds its network slices multiplied by their lung mask, and its app and
sample file show them so (the lungs on a light grey: `anamnet_samples`); researchers pass such
slices on. Their lungs are known exactly: what is not background. The learned lung model, taught
whole slices and crops, finds only part of them (on the paper's slice 122 it missed the front of
both lungs), so for these pictures the background decides.

A picture is lung-masked when
1. one grey level (within `BG_TOLERANCE`) covers at least `BG_SHARE` of it: measured here, the
   paper's eight masked slices 0.74-0.91, ma20's slices masked by their lungs 0.76-0.99; whole
   pictures at most 0.52 (MedSeg 0.02-0.52, ma20 0.06-0.41, real_ct in a lung window 0.18-0.32,
   in a mediastinal window 0.39-0.47), though a small patient in a wide field can pass it, and
2. that grey also fills the middle of what is not background (`MIDDLE`, a box about the centre of
   its extent): between two lungs lies the mediastinum, masked away; in a whole slice the middle
   of the body is the mediastinum or the spine, never the air outside it, in any window.
The learned lung model cannot judge this: on a masked ma20 slice it finds its "lungs" in the
black background.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from covseg.errors import InputError
from covseg.lungs.threshold import _touching_border, largest_components, split_left_right

BG_TOLERANCE = 6  # grey levels: JPEG's ringing about the flat grey, against dark lung at the
# edge of a black background. Lungs Dice at 0 / 6 / 12: the paper's four JPEGs against their
# lossless twins in sampledata.mat 0.84-0.94 / 0.97-0.99 / 0.97-1.00; 41 ma20 slices masked on
# black 0.999 / 0.994 (least 0.983) / 0.983 (least 0.864)
BG_SHARE = 0.6
MIDDLE = 0.1  # of the extent of what is not background, each way
SPECK = 0.001  # of the picture: a hole in the lungs up to this size is JPEG's, not the mask's


def background(plane: np.ndarray) -> np.ndarray | None:
    """The picture's flat background (boolean), or None where no one grey covers `BG_SHARE`."""
    plane = np.asarray(plane, dtype=np.float32)
    lo, hi = float(plane.min()), float(plane.max())
    if hi <= lo:
        return None
    values = np.rint((plane - lo) * (255.0 / (hi - lo))).astype(np.int64)  # as 8 bits
    mode = int(np.bincount(values.ravel()).argmax())
    flat = np.abs(values - mode) <= BG_TOLERANCE
    return flat if flat.mean() >= BG_SHARE else None


def _content(flat: np.ndarray) -> np.ndarray:
    """What is not background, without JPEG's specks, its largest parts (a label or a ruler
    beside the lungs is dropped)."""
    return largest_components(ndi.binary_opening(~flat, iterations=1), keep_ratio=0.05)


def middle_is_background(flat: np.ndarray) -> bool:
    """Criterion 2 above: the box about the centre of the content's extent is mostly background."""
    content = _content(flat)
    if not content.any():
        return False
    box = []
    for axis in (1, 0):
        idx = np.flatnonzero(content.any(axis=axis))
        centre, half = (idx[0] + idx[-1]) / 2, max(1.0, MIDDLE * (idx[-1] - idx[0]) / 2)
        box.append(slice(int(centre - half), int(np.ceil(centre + half)) + 1))
    return bool(flat[box[0], box[1]].mean() >= 0.5)


def is_lung_masked(stack: np.ndarray) -> bool:
    """Every picture of the stack is lung-masked."""
    for plane in stack:
        flat = background(plane)
        if flat is None or not middle_is_background(flat):
            return False
    return True


def _mend_specks(lungs: np.ndarray, most: int) -> np.ndarray:
    """The holes of at most `most` pixels filled (not what reaches the picture's edge)."""
    lab, n = ndi.label(~lungs & ~_touching_border(~lungs))
    small = np.bincount(lab.ravel(), minlength=n + 1) <= most
    small[0] = False
    return lungs | small[lab]


def masked_lungs(stack: np.ndarray) -> np.ndarray:
    """(z, y, x) lung-masked pictures -> (z, y, x) uint8: 0 none, 1 right, 2 left lung.

    The lungs are the user's, as a given lung mask is: what is not background, its largest
    parts, with only JPEG's specks mended (`SPECK`); a larger hole is the mask's own (ma20 leaves
    out structures that the lung surrounds) and stays.
    """
    sides = np.zeros(stack.shape, dtype=np.uint8)
    for z, plane in enumerate(stack):
        flat = background(plane)
        if flat is None:
            raise InputError("this picture is not lung-masked (no flat background covers "
                             f"{BG_SHARE:.0%} of it); use --lungs model")
        lungs = ndi.binary_closing(_content(flat), iterations=1)
        sides[z] = split_left_right(_mend_specks(lungs, int(SPECK * plane.size))[None])[0]
    return sides
