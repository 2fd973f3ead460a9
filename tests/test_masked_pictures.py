"""Lung-masked pictures keep their own lungs (covseg.lungs.masked): the paper feeds and shows its
slices so, and the learned lung model finds only part of such lungs (or, on black, none)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

import covseg
from covseg.errors import InputError
from covseg.lungs import resolve_method
from covseg.lungs.masked import masked_lungs


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def slice_and_lungs():
    """The phantom's most diseased slice in a lung window (8-bit), and its true lungs."""
    phantom = covseg.make_phantom()
    z = int(np.argmax(phantom.lesions.sum(axis=(1, 2))))
    grey = np.rint(np.clip((phantom.hu[z] + 1350) / 1500, 0, 1) * 255).astype(np.uint8)
    return grey, phantom.lungs[z] > 0


def _masked(grey: np.ndarray, lungs: np.ndarray, background: int) -> np.ndarray:
    return np.where(lungs, grey, background).astype(np.uint8)


@pytest.mark.parametrize("background", [0, 231])  # black; the paper app's light grey
def test_a_lung_masked_picture_is_segmented_inside_its_own_lungs(slice_and_lungs, background, tmp_path):
    grey, lungs = slice_and_lungs
    path = tmp_path / "masked.png"
    Image.fromarray(_masked(grey, lungs, background)).save(path)
    result = covseg.segment(path, tmp_path / "out")
    assert result.report.preprocessing.lungs == "masked"  # decided, and recorded as decided
    assert "came lung-masked" in (tmp_path / "out" / "report.html").read_text()
    found = result.lungs[0] > 0
    assert dice(found, lungs) > 0.99
    assert not (result.labels[0][~lungs]).any()  # nothing called outside the given lungs


def test_whole_pictures_are_not_taken_for_masked_ones(slice_and_lungs):
    grey, _ = slice_and_lungs
    wide = np.pad(grey, 300)  # a small patient in a wide black field: the air is most of it
    mediastinal = np.rint(np.clip((covseg.make_phantom().hu[20] + 125) / 350, 0, 1) * 255)
    for picture in (grey, wide, np.pad(mediastinal, 300)):  # in that window the lungs are black too
        assert resolve_method("auto", "display", picture[None].astype(np.float32)) == "model"


def test_masked_is_refused_where_it_cannot_apply(slice_and_lungs, tmp_path, cli):
    grey, _ = slice_and_lungs
    with pytest.raises(InputError, match="not lung-masked"):
        masked_lungs(np.linspace(0, 255, grey.size).reshape((1, *grey.shape)))
    with pytest.raises(InputError, match="Hounsfield"):
        resolve_method("masked", "hu")
    path = tmp_path / "gradient.png"
    Image.fromarray(np.linspace(0, 255, 256 * 256).reshape(256, 256).astype(np.uint8)).save(path)
    code, _, err = cli("segment", path, "-o", tmp_path / "out", "--lungs", "masked")
    assert code == 2 and err.count("\n") == 1 and "not lung-masked" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_papers_masked_slices_keep_their_lungs(data_dir, tmp_path):
    """The Anam-Net paper's four slices, as its app shows them (JPEG) and as its sample file
    holds them: every one is lung-masked; the JPEG's lungs are the lossless twin's, and the
    lesion-free slice 292 stays CT-0."""
    mat = loadmat(data_dir / "anamnet_samples" / "sampledata.mat")
    for name, key in (("50", "im1"), ("122", "im2"), ("292", "im3"), ("676", "im4")):
        exact = masked_lungs(mat[key][None].astype(np.float32))[0] > 0
        result = covseg.segment(data_dir / "anamnet_samples" / f"slice_{name}.jpeg", pictures=False)
        assert result.report.preprocessing.lungs == "masked", name
        assert dice(result.lungs[0] > 0, exact) > 0.96, name
        if name == "292":
            assert result.report.quantification.severity.grade == "CT-0"


def test_ma20_slices_masked_are_found_and_whole_ones_are_not(data_dir):
    """Fold-4 slices as ma20 stores them (whole) and multiplied by their lungs (as the paper
    feeds them): only the second are lung-masked, and their lungs are the data set's."""
    root = data_dir / "ma20"
    for i in (970, 1096, 1223, 1530):
        ct = np.asarray(Image.open(root / "ct" / f"{i:04d}.png"))
        lungs = np.asarray(Image.open(root / "lungs" / f"{i:04d}.png")) > 0
        assert resolve_method("auto", "display", ct[None].astype(np.float32)) == "model", i
        masked = (ct * lungs)[None].astype(np.float32)
        assert resolve_method("auto", "display", masked) == "masked", i
        assert dice(masked_lungs(masked)[0] > 0, lungs) > 0.98, i
