"""covseg's learned lung model: two U-Nets trained on ma20's lung masks and medseg100's
lung-window training pictures, their probabilities averaged: a small one
(configs/lungs_ma20_medseg.yaml) and a wider one whose loss weighs the lesion pixels again
(configs/lungs_ma20_medseg_wide.yaml); docs/results.md, "Lungs".

It works on any slice through the preprocessing contract (whole slice, min-max + CLAHE, padded to
a square so the aspect is kept, at half the model scale: 128 pixels across), so it serves
pictures, where HU thresholds cannot. It was trained across framings (whole slices to tight crops),
quarter turns, mirrors and re-windowed pictures, so a picture needs no framing before it. The
MedSeg pictures (pseudo lungs: their lesions joined to the dark lungs) teach it that dense
disease at the pleura of a lung-window picture is lung.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

from covseg.models.weights import WEIGHTS_DIR, load_model
from covseg.intensity import Intensity
from covseg.preprocess.contract import enhance
from covseg.preprocess.resample import resize_planes
from covseg.labels import LEFT, RIGHT
from covseg.lungs.box import mask_box
from covseg.lungs.threshold import close_and_fill, largest_components, split_left_right

DEFAULT_LUNG_WEIGHTS = WEIGHTS_DIR / "lungs_ma20_medseg.pt"
WIDE_LUNG_WEIGHTS = WEIGHTS_DIR / "lungs_ma20_medseg_wide.pt"  # configs/lungs_ma20_medseg_wide.yaml
SHIPPED_LUNG_WEIGHTS = (DEFAULT_LUNG_WEIGHTS, WIDE_LUNG_WEIGHTS)  # used together, their mean
LUNG_MODEL_PX = 128
LUNG_THRESHOLD = 0.5  # the default cut; weights may record their own (`covseg ship --threshold`)
CLOSER_MARGIN = 0.10  # of the lungs' box side, kept around it for the closer look
CLOSER_AREA = 0.8  # a box over this share of the plane: the picture is cut to its lungs already


class LungModel:
    """`LungModel().apply(stack, intensity)` -> (z, y, x) uint8: 0 none, 1 right, 2 left lung."""

    def __init__(self, weights: str | Path | Sequence[str | Path] | None = None,
                 batch_size: int = 16):
        paths = SHIPPED_LUNG_WEIGHTS if weights is None else (
            [weights] if isinstance(weights, (str, Path)) else list(weights))
        loaded = [load_model(path, model="lung_unet") for path in paths]
        self.nets = [net for net, _ in loaded]
        self.batch_size = batch_size
        # One model: the cut chosen on a held-out fold with its weights (its metadata). Several:
        # the default, which ma20 fold 3 chose for the shipped pair's mean. The closer look's
        # box keeps the default cut either way, as the choices were measured.
        self.threshold = (float(loaded[0][1].get("threshold", LUNG_THRESHOLD)) if len(loaded) == 1
                          else LUNG_THRESHOLD)

    @classmethod
    @cache
    def shared(cls) -> "LungModel":
        """The shipped model, loaded once per process."""
        return cls()

    def probabilities(self, stack: np.ndarray, intensity: Intensity | str) -> np.ndarray:
        """Lung probability per pixel, at the stack's own size: the mean over the models of each
        one's two looks. The shipped pair (the 0.5 M model and the 2.0 M lesion-weighted one)
        keeps more of the disease inside at the same lung Dice than either alone: ma20 fold 4
        pictures 98.41 % at 0.9709 against 97.26 % at 0.9727 (docs/results.md, "Lungs")."""
        return np.mean([self._two_looks(net, stack, intensity) for net in self.nets], axis=0)

    def _two_looks(self, net: torch.nn.Module, stack: np.ndarray,
                   intensity: Intensity | str) -> np.ndarray:
        """One model's lung probability: a look at the whole plane, then a closer look at the
        lungs' box, where the larger of the two is kept.

        At 128 pixels across a whole 512-pixel slice the model sees the pleura 4 pixels to one;
        cut to the lungs' square box (as MedSeg's pictures are cut, which it learned) it sees them
        up to 1.5 times finer, and more of the disease against the wall comes inside. On 96
        evenly spaced ma20 fold-4 pictures (lung Dice pooled / reference lesion pixels inside;
        these with the box grown 10 % a side, not yet made square): one look 0.9699 / 95.14 %;
        the closer look replacing the first 0.9704 / 96.23 %, averaged with it 0.9725 / 95.92 %,
        the larger of the two 0.9709 / 97.23 % (chosen: most disease inside; the paper's
        lesion-free slice 292 stays at 0.00 %). All 381 fold-4 pictures, square box:
        0.9727 / 97.26 % against 0.9698 / 94.91 % (docs/results.md, "Lungs"). A picture already
        cut to its lungs gets no second look: it would see the same.
        """
        prob = self._look(stack, intensity, net)
        box = mask_box(largest_components(prob > LUNG_THRESHOLD, keep_ratio=0.05))
        if box is None:
            return prob
        h, w = stack.shape[1:]
        ys, xs = _square(box[1:], (h, w))
        if (ys.stop - ys.start) * (xs.stop - xs.start) > CLOSER_AREA * h * w:
            return prob
        closer = self._look(np.ascontiguousarray(stack[:, ys, xs]), intensity, net)
        np.maximum(prob[:, ys, xs], closer, out=prob[:, ys, xs])
        return prob

    def _look(self, stack: np.ndarray, intensity: Intensity | str,
              net: torch.nn.Module) -> np.ndarray:
        """One look: the mean over the four quarter turns of the input, since a picture may
        come in any of them.

        With this model, on medseg100's 10 held-out training pictures (lesion pixels inside /
        abnormal Dice per slice): maximum 99.15 % / 0.6165, mean 98.50 % / 0.6214, one view
        98.22 % / 0.6207, lower median 98.12 % / 0.6310. The maximum (chosen for the ma20-only
        model, which missed dense lesions in single views) also takes in the hilum: the paper's
        lesion-free slice 292 got 1.30 % involvement (CT-1) from it, 0.00 % from the mean or the
        median. Between those two the mean keeps more of the disease on the test sets
        (docs/results.md, "Lungs": measured after the choice was first made for the median).
        """
        h, w = stack.shape[1:]
        side = max(h, w)
        enhanced = np.zeros((len(stack), side, side), np.float32)  # padded square: aspect kept
        enhanced[:, :h, :w] = [enhance(plane, intensity) for plane in stack]
        small = resize_planes(enhanced, (LUNG_MODEL_PX, LUNG_MODEL_PX))
        out = []
        with torch.inference_mode():
            for k in range(0, len(small), self.batch_size):
                x = torch.from_numpy(small[k:k + self.batch_size, None])
                views = []
                for turns in range(4):
                    # lung = not background: a 2-class model (lung) or a 3-class one (abnormal, normal)
                    lung = 1.0 - torch.softmax(net(torch.rot90(x, turns, dims=(2, 3))), 1)[:, 0]
                    views.append(torch.rot90(lung, -turns, dims=(1, 2)))
                out.append(torch.stack(views).mean(dim=0).numpy())
        return resize_planes(np.concatenate(out), (side, side))[:, :h, :w]

    def apply(self, stack: np.ndarray, intensity: Intensity | str) -> np.ndarray:
        """Slice by slice (the stack may hold unrelated pictures): largest parts, split in two,
        each lung's holes filled (vessels, dense lesions inside it belong to it)."""
        return lung_sides(self.probabilities(stack, intensity), self.threshold)


def lung_sides(prob: np.ndarray, threshold: float) -> np.ndarray:
    """(z, y, x) lung probabilities -> uint8 sides (0 none, 1 right, 2 left), as `apply` makes
    them; the threshold is an argument so a candidate can be measured the same way."""
    lungs = prob > threshold
    sides = np.zeros(prob.shape, dtype=np.uint8)
    everywhere = np.ones((1, *prob.shape[1:]), bool)
    for z in np.nonzero(lungs.any(axis=(1, 2)))[0]:
        split = split_left_right(largest_components(lungs[z][None], keep_ratio=0.05))
        for label in (RIGHT, LEFT):
            filled = close_and_fill(split == label, everywhere, 1)[0]
            sides[z][filled & (sides[z] == 0)] = label
    return sides


def _square(box: tuple[slice, slice], shape: tuple[int, int]) -> tuple[slice, slice]:
    """The lungs' box grown by the margin to a square about its centre, shifted (then cut) to
    lie in the plane: a square needs no padding, so a turned picture gets the turned crop."""
    (ys, xs), side = box, max(box[0].stop - box[0].start, box[1].stop - box[1].start)
    side = int(side * (1 + 2 * CLOSER_MARGIN))
    out = []
    for s, n in zip((ys, xs), shape):
        start = min(max((s.start + s.stop - side) // 2, 0), max(n - side, 0))
        out.append(slice(start, min(start + side, n)))
    return out[0], out[1]
