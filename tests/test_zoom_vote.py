"""A picture framed by its lung extent has only an estimated zoom, so the lesion model runs at
three zooms around it and votes (covseg.infer.framing.ZOOM_VOTE); a whole slice or a CT, whose
zoom is known, runs once."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import covseg
from covseg import pipeline
from covseg.infer.framing import ZOOM_VOTE, Framing
from covseg.labels import ABNORMAL


def test_only_an_estimated_zoom_is_voted():
    assert Framing(1.2, 0, "lung extent").zooms == pytest.approx([1.2 * f for f in ZOOM_VOTE])
    # the estimate runs first: the pipeline reuses the frame's grid and its contrast decisions
    assert Framing(1.2, 0, "lung extent").zooms[0] == 1.2
    for basis in ("pixel size", "matrix", "matrix (a whole slice)"):
        assert Framing(1.2, 0, basis).zooms == (1.2,)


@pytest.fixture(scope="module")
def phantom_picture():
    """The phantom's most diseased slice in a lung window, and the same cut to its lungs."""
    phantom = covseg.make_phantom()
    z = int(np.argmax(phantom.lesions.sum(axis=(1, 2))))
    grey = np.rint(np.clip((phantom.hu[z] + 1350) / 1500, 0, 1) * 255).astype(np.uint8)
    ys, xs = np.nonzero(phantom.lungs[z])
    crop = grey[ys.min() - 4:ys.max() + 5, xs.min() - 4:xs.max() + 5]
    return grey, crop


def test_a_crop_is_voted_over_three_zooms_and_a_whole_slice_is_not(phantom_picture, tmp_path,
                                                                     monkeypatch):
    real, runs = pipeline._full_resolution_labels, []

    def spy(small_labels, sides):
        runs.append(real(small_labels, sides))
        return runs[-1]

    monkeypatch.setattr(pipeline, "_full_resolution_labels", spy)
    seg = covseg.LesionSegmenter()
    grey, crop = phantom_picture
    for name, image, voted in (("whole", grey, 1), ("crop", crop, 3)):
        runs.clear()
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        result = covseg.segment(path, segmenter=seg, pictures=False)
        pre = result.report.preprocessing
        assert pre.zooms_voted == voted == len(runs), name
        assert (pre.zoom_from == "lung extent") == (voted == 3), pre.zoom_from
        final = result.labels[0] == ABNORMAL
        majority = np.sum([r[0] == ABNORMAL for r in runs], axis=0) * 2 > voted
        assert final.sum() > 100 and np.array_equal(final, majority), name
        assert np.array_equal(result.labels[0] > 0, runs[0][0] > 0)  # the lungs are not voted
    # the three runs differ (else there is nothing to vote), and the vote lies between them
    sizes = sorted(int((r[0] == ABNORMAL).sum()) for r in runs)
    assert sizes[0] < sizes[-1] and sizes[0] <= final.sum() <= sizes[-1]
