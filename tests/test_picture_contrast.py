"""A picture that is enhanced already is not enhanced again (covseg.preprocess.contract.picture_clahe).

Issue 16, item 1: a user's PNG of an ma20 slice, enhanced a second time, lost 0.04-0.05 abnormal
Dice against the same slice at its own intensity. The contrast step now runs CLAHE only where the
picture's lungs then look more like ma20's.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import covseg
from covseg.demo.phantom import make_phantom
from covseg.intensity import Intensity
from covseg.preprocess.contract import enhance, picture_clahe

LUNG_WINDOW = (-1350.0, 150.0)  # W 1500, L -600


def _picture(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return np.rint(np.clip((hu - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


def test_windowed_pictures_get_clahe_and_enhanced_ones_do_not(phantom):
    for z in (16, 32, 48):
        lungs = phantom.lungs[z] > 0
        for window in (LUNG_WINDOW, (-1024.0, 2000.0)):
            assert picture_clahe(_picture(phantom.hu[z], window), lungs)
        once = np.rint(enhance(_picture(phantom.hu[z], LUNG_WINDOW), Intensity.DISPLAY) * 255)
        assert not picture_clahe(once.astype(np.uint8), lungs)


def test_a_picture_and_its_enhanced_copy_give_the_same_lesions(phantom, tmp_path):
    """The picture is enhanced once by covseg; the enhanced copy (what a user may save from a
    viewer that enhanced it) is taken as it is: the network sees the same slice either way."""
    z = 32
    lungs = (phantom.lungs[z] > 0)[None]
    raw = _picture(phantom.hu[z], LUNG_WINDOW)
    once = np.rint(enhance(raw, Intensity.DISPLAY) * 255).astype(np.uint8)
    found = {}
    for name, pic in (("raw", raw), ("once", once)):
        path = tmp_path / f"{name}.png"
        Image.fromarray(pic).save(path)
        result = covseg.segment(path, tmp_path / name, lung_mask=lungs)
        found[name] = result.labels[0] == 1
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["preprocessing"]["contrast"] == (
            "min-max + CLAHE" if name == "raw" else "min-max (enhanced already)")
    a, b = found["raw"], found["once"]
    assert a.sum() > 200  # the phantom's lesions are there to be found
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95


def test_hu_scans_are_always_enhanced(tmp_path):
    from covseg.demo import save_phantom

    path = save_phantom(make_phantom(shape=(16, 128, 128), spacing=(5.0, 2.8, 2.8)),
                        tmp_path / "phantom.nii.gz")
    assert covseg.segment(path, pictures=False).report.preprocessing.contrast == "min-max + CLAHE"


def test_ma20_pictures_keep_their_own_look(data_dir, tmp_path):
    """ma20's PNGs are enhanced already: given as pictures with their lungs, they reach the model
    as the research loader gives them (Intensity.ENHANCED), so the result is the same."""
    ids = [1000, 1150, 1530, 1590]  # fold 4
    kept = 0
    for i in ids:
        path = data_dir / "ma20" / "ct" / f"{i:04d}.png"
        lungs = np.asarray(Image.open(data_dir / "ma20" / "lungs" / f"{i:04d}.png"))[None] > 0
        as_picture = covseg.segment(path, lung_mask=lungs)
        scan = covseg.read_scan(path)
        scan.intensity = Intensity.ENHANCED
        own = covseg.segment(scan, lung_mask=lungs)
        if as_picture.report.preprocessing.contrast == "min-max (enhanced already)":
            kept += 1
            a, b = as_picture.labels[0] == 1, own.labels[0] == 1
            assert 2 * (a & b).sum() / max(1, a.sum() + b.sum()) > 0.97
    assert kept >= 2
