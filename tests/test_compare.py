"""`covseg compare`: follow-up of one patient, from scans or from `covseg segment` folders.

Tolerance: a lesion change of known volume is found within 15 % of that volume (measured: grown
by 53.5 mL, found 52.9 mL).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from builders import write_dicom_series
from covseg.compare import STABLE_BAND_PP, compare
from covseg.demo import make_phantom, save_phantom
from covseg.demo.phantom import HU_GGO, HU_LUNG
from covseg.infer import LesionSegmenter

SHAPE, SPACING = (32, 128, 128), (5.0, 2.8, 2.8)


@pytest.fixture(scope="module")
def segmenter():
    return LesionSegmenter()


def _changed(grow: int):
    """The phantom with its lesions grown (grow > 0) or shrunk (< 0) by |grow| voxels within
    the lungs; returns it and the true change in mL."""
    p = make_phantom(shape=SHAPE, spacing=SPACING)
    before = p.lesions.copy()
    if grow > 0:
        after = ndimage.binary_dilation(before, iterations=grow) & (p.lungs > 0)
        p.hu[after & ~before] = HU_GGO
    else:
        after = ndimage.binary_erosion(before, iterations=-grow)
        p.hu[before & ~after] = HU_LUNG
    voxel_ml = float(np.prod(SPACING)) / 1000.0
    return p, (int(after.sum()) - int(before.sum())) * voxel_ml


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    d = tmp_path_factory.mktemp("scans")
    base = save_phantom(make_phantom(shape=SHAPE, spacing=SPACING), d / "base.nii.gz")
    out = {"base": base}
    for name, grow in (("grown", 1), ("shrunk", -1)):
        p, ml = _changed(grow)
        out[name] = (save_phantom(p, d / f"{name}.nii.gz"), ml)
    return out


def test_scan_against_itself_is_stable(scans, tmp_path, segmenter):
    r = compare(scans["base"], scans["base"], tmp_path, segmenter=segmenter)
    s = json.loads((tmp_path / "compare.json").read_text())
    assert s["verdict"] == "stable" and r.summary["verdict"] == "stable"
    assert s["change"]["overall"] == {"lesion_ml": 0.0, "involvement_pp": 0.0}
    assert s["rule"]["stable_band_pp"] == STABLE_BAND_PP
    assert s["rule"]["measured_test_retest_noise"]["phantom_shift_and_resample_max_pp"] < STABLE_BAND_PP
    assert np.allclose(s["registration"]["parameters"], 0, atol=0.05)
    page = (tmp_path / "compare.html").read_text()
    assert page.count("data:image/png;base64,") >= 9 and "stable" in page  # 4 pairs and the plot


@pytest.mark.parametrize("name,word", [("grown", "progression"), ("shrunk", "regression")])
def test_known_lesion_change_is_found(scans, tmp_path, segmenter, name, word):
    path, true_ml = scans[name]
    r = compare(scans["base"], path, tmp_path, segmenter=segmenter)
    found = r.summary["change"]["overall"]["lesion_ml"]
    assert found == pytest.approx(true_ml, rel=0.15), (found, true_ml)
    assert r.summary["verdict"] == word
    assert r.summary["before"]["grade"] and r.summary["after"]["grade"]
    for side in ("right", "left"):
        assert np.sign(r.summary["change"][side]["lesion_ml"]) == np.sign(true_ml)


def test_registration_finds_a_shift(scans, tmp_path, segmenter):
    p = make_phantom(shape=SHAPE, spacing=SPACING)
    p.hu = ndimage.shift(p.hu, (0, 0, 3), order=0, mode="nearest")  # 3 columns = 8.4 mm
    moved = save_phantom(p, tmp_path / "moved.nii.gz")
    r = compare(scans["base"], moved, segmenter=segmenter)
    tx = r.summary["registration"]["parameters"][3:]
    assert abs(abs(tx[0]) - 8.4) < 1.5 and abs(tx[1]) < 1.5 and abs(tx[2]) < 1.5
    assert r.summary["verdict"] == "stable"
    lesions_before = r.before.labels == 1
    overlap = (lesions_before & (r.after_labels_aligned == 1)).sum() / lesions_before.sum()
    assert overlap > 0.8  # the aligned lesions sit where the first scan's are


def test_cli_on_segment_folders_and_broken_folders(scans, tmp_path, cli):
    for name in ("base", "grown"):
        path = scans[name] if name == "base" else scans[name][0]
        code, _, err = cli("segment", path, "-o", tmp_path / name)
        assert code == 0, err
    code, out, err = cli("compare", tmp_path / "base", tmp_path / "grown", "-o", tmp_path / "cmp")
    assert code == 0, err
    assert out.startswith("progression") and "points" in out
    assert (tmp_path / "cmp" / "compare.html").is_file()

    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "base", broken)
    (broken / "lungs.nii.gz").unlink()
    code, _, err = cli("compare", broken, tmp_path / "grown", "-o", tmp_path / "x")
    assert code == 2 and "lungs.nii.gz is missing" in err and len(err.strip().splitlines()) == 1
    (broken / "report.json").unlink()
    code, _, err = cli("compare", broken, tmp_path / "grown", "-o", tmp_path / "x")
    assert code == 2 and "report.json" in err and len(err.strip().splitlines()) == 1


def test_picture_against_a_volume_is_refused(scans, tmp_path, cli):
    picture = tmp_path / "slice.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(picture)
    code, _, err = cli("compare", picture, scans["base"], "-o", tmp_path / "out")
    assert code == 2 and "picture" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_different_patients_warn(tmp_path, cli):
    p = make_phantom(shape=SHAPE, spacing=SPACING)
    a = write_dicom_series(p.hu, p.spacing, tmp_path / "a", PatientID="PAT-A")
    b = write_dicom_series(p.hu, p.spacing, tmp_path / "b", PatientID="PAT-B")
    code, out, err = cli("compare", a, b, "-o", tmp_path / "out")
    assert code == 0, err
    assert "warning: different patients" in out and "PAT-A" in out
    s = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert any("different patients" in w for w in s["warnings"])
    assert "different patients" in (tmp_path / "out" / "compare.html").read_text()


def test_two_different_real_inputs(real_ct, scans, tmp_path, segmenter):
    r = compare(real_ct / "example_ct.nii.gz", scans["base"], tmp_path, segmenter=segmenter)
    assert r.summary["verdict"] in ("progression", "stable", "regression")
    assert r.summary["warnings"]  # coverage and lung volume differ: said, not hidden
    assert (tmp_path / "compare.html").is_file()
