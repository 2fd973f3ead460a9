"""Input QA and 'only lungs': what covseg cannot measure is refused before the model runs.

Synthetic inputs always run; the `real_ct` tests cut and rewrite the real CT (abdomen below its
lung bases, DICOM series written with pydicom as CT and as MR, remapped intensities).
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from builders import ABDOMEN_SLICES, real_ct_hu, write_dicom_series


def _refused(cli, target, out, *extra, match):
    code, _, err = cli("segment", target, "-o", out, *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    assert not out.exists()  # nothing written
    return lines[0]


def _abdomen_phantom() -> np.ndarray:
    """A body of soft tissue with fat, bone and bowel-gas pockets, and no lungs."""
    z, y, x = np.mgrid[:24, :128, :128]
    hu = np.full(z.shape, -1000.0, np.float32)
    body = ((y - 64) / 50) ** 2 + ((x - 64) / 60) ** 2 < 1
    hu[body] = 40.0
    hu[body & (((y - 64) / 50) ** 2 + ((x - 64) / 60) ** 2 > 0.8)] = -100.0  # subcutaneous fat
    hu[((y - 100) ** 2 + (x - 64) ** 2 < 36)] = 700.0  # spine
    for cy, cx, r in ((45, 50, 5), (50, 80, 4), (70, 40, 3), (60, 90, 6)):
        pocket = (y - cy) ** 2 + (x - cx) ** 2 < r ** 2
        hu[pocket & (z % 6 < 4)] = -800.0  # gas mixed with bowel content
    return hu


def test_a_scan_without_lungs_is_refused(cli, tmp_path):
    img = nib.Nifti1Image(np.transpose(_abdomen_phantom(), (2, 1, 0)), np.diag([-2.0, -2.0, 3.0, 1]))
    nib.save(img, tmp_path / "abdomen.nii.gz")
    _refused(cli, tmp_path / "abdomen.nii.gz", tmp_path / "out", match="no lungs in this scan")


def test_real_abdomen_below_the_lungs_is_refused_as_nifti_and_dicom(cli, real_ct, tmp_path):
    hu, spacing = real_ct_hu(real_ct)
    img = nib.load(real_ct / "example_ct.nii.gz")
    lower = np.asarray(img.dataobj)[:, :, ABDOMEN_SLICES]  # RAS file order: z is the last axis
    nib.save(nib.Nifti1Image(lower, img.affine), tmp_path / "abdomen.nii.gz")
    _refused(cli, tmp_path / "abdomen.nii.gz", tmp_path / "o1", match="no lungs in this scan")
    series = write_dicom_series(hu[ABDOMEN_SLICES][:20], spacing, tmp_path / "abdomen_dcm")
    _refused(cli, series, tmp_path / "o2", match="no lungs in this scan")


def test_a_batch_records_a_scan_without_lungs_as_refused(cli, real_ct, tmp_path):
    img = nib.load(real_ct / "example_ct.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, ABDOMEN_SLICES], img.affine),
             tmp_path / "abdomen.nii.gz")
    code, out, _ = cli("segment", tmp_path / "abdomen.nii.gz", real_ct / "example_ct.nii.gz",
                       "-o", tmp_path / "out")
    assert code == 2
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "refused" in summary and "no lungs in this scan" in summary
    assert json.loads((tmp_path / "out" / "example_ct" / "report.json").read_text())
    assert not (tmp_path / "out" / "abdomen").exists()


def test_chest_dicom_series_passes_and_records_its_qa(cli, real_ct, tmp_path):
    hu, spacing = real_ct_hu(real_ct)
    series = write_dicom_series(hu[-20:], spacing, tmp_path / "chest")
    code, _, err = cli("segment", series, "-o", tmp_path / "out")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["qa"] == {"refusals": [], "overridden": False}
    assert report["coverage"]["covered"] != "whole lungs"  # the scan holds the lung bases only
    assert report["quantification"]["lung_ml"] > 50


def test_mr_modality_is_refused_and_an_expert_can_override(cli, real_ct, tmp_path):
    hu, spacing = real_ct_hu(real_ct)
    series = write_dicom_series(hu[-20:], spacing, tmp_path / "mr", modality="MR")
    _refused(cli, series, tmp_path / "out", match="modality is MR")
    code, _, err = cli("segment", series, "-o", tmp_path / "out", "--override-qa")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["qa"]["overridden"] and report["qa"]["refusals"][0]["code"] == "modality"
    assert report["warnings"][0].startswith("QA OVERRIDDEN: DICOM modality is MR")
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.index('class="override"') < page.index("<h1>")  # at the top, in red


def test_mr_like_intensities_are_refused(cli, real_ct, tmp_path):
    img = nib.load(real_ct / "example_ct.nii.gz")
    hu = np.asarray(img.dataobj).astype(np.float32)
    mr = np.clip((hu + 1000.0) * 1.7, 0, None) ** 0.9  # an MR-like range: 0 .. a few thousand
    nib.save(nib.Nifti1Image(mr.astype(np.float32), img.affine), tmp_path / "mr.nii.gz")
    _refused(cli, tmp_path / "mr.nii.gz", tmp_path / "out", match="not a CT in HU")


def _chest_slices(n: int = 6) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A small synthetic chest in HU: body, two lungs, vessels (always available)."""
    z, y, x = np.mgrid[:n, :96, :96]
    hu = np.full(z.shape, -1000.0, np.float32)
    hu[((y - 48) / 40) ** 2 + ((x - 48) / 44) ** 2 < 1] = 40.0
    for cx in (28, 68):
        hu[((y - 48) / 28) ** 2 + ((x - cx) / 14) ** 2 < 1] = -850.0
    return hu, (5.0, 3.0, 3.0)


@pytest.mark.parametrize("kind, changes, match", [
    ("localiser", {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, "localiser"),
    ("gantry tilt", {"GantryDetectorTilt": 15.0}, "gantry tilt of 15"),
    ("coronal", {"orientation": (1, 0, 0, 0, 0, -1)}, "not axial"),
    ("slice gap", {"positions": [0.0, 5.0, 10.0, 20.0, 25.0, 30.0]}, "not evenly spaced"),
])
def test_series_the_qa_refuses(cli, tmp_path, kind, changes, match):
    hu, spacing = _chest_slices(20 if kind == "coronal" else 6)
    series = write_dicom_series(hu, spacing, tmp_path / "series", **changes)
    _refused(cli, series, tmp_path / "out", match=match)


def test_a_clean_synthetic_series_passes_the_qa(tmp_path):
    from covseg.io import read_scan
    from covseg.io.qa import check_input

    hu, spacing = _chest_slices()
    scan = read_scan(write_dicom_series(hu, spacing, tmp_path / "series"))
    result = check_input(scan)
    assert result.refusals == [] and not result.overridden
