"""The learned lung model's closer look at the lungs' box (covseg.lungs.learned): a whole slice
gets it, a picture already cut to its lungs does not, and it only ever adds lung."""
from __future__ import annotations

import numpy as np

import covseg
from covseg.lungs.learned import LUNG_THRESHOLD, LungModel


def _slice() -> np.ndarray:
    """A lung-window picture of the phantom's most diseased slice, the whole slice."""
    phantom = covseg.make_phantom()
    z = int(np.argmax(phantom.lesions.sum(axis=(1, 2))))
    return np.rint(np.clip((phantom.hu[z] + 1350) / 1500, 0, 1) * 255)[None].astype(np.float32)


class _Counting(LungModel):
    def __init__(self):
        shared = LungModel.shared()
        self.nets, self.batch_size = shared.nets[:1], shared.batch_size  # one model's two looks
        self.sizes: list[tuple[int, int]] = []

    def _look(self, stack, intensity, net):
        self.sizes.append(stack.shape[1:])
        return super()._look(stack, intensity, net)


def test_a_whole_slice_gets_a_closer_look_that_only_adds_lung():
    image = _slice()
    model = _Counting()
    prob = model.probabilities(image, "display")
    assert len(model.sizes) == 2, model.sizes
    (h, w), (ch, cw) = model.sizes
    assert ch * cw < 0.8 * h * w  # the second look saw the lungs' box, not the slice again
    first = LungModel._look(model, image, "display", model.nets[0])
    assert np.all(prob >= first - 1e-6)  # the larger of the two looks: lung is never taken away
    assert (prob > LUNG_THRESHOLD).sum() >= (first > LUNG_THRESHOLD).sum()


def test_a_picture_cut_to_its_lungs_gets_one_look():
    image = _slice()
    model = _Counting()
    lungs = model.probabilities(image, "display")[0] > LUNG_THRESHOLD
    ys, xs = np.nonzero(lungs)
    crop = np.ascontiguousarray(image[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    model.sizes.clear()
    model.probabilities(crop, "display")
    assert model.sizes == [crop.shape[1:]]
