"""Lesions that agree with density: synthetic lesions of known volume inserted into the real CT.

Copies of real_ct (whose lung bases look aerated) get ground glass (-450 HU) and consolidation
(-20 HU) inside the lungs, deep and against the pleura, round and patchy, at several sizes; the
found lesion volume inside each insertion, the lung volume and everything outside the insertion
are compared with the scan without insertions. Also the density figures and the gate's rule.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

import covseg
from covseg.infer import LesionSegmenter
from covseg.lungs import extract_lungs_hu


@pytest.fixture(scope="module")
def base(real_ct, tmp_path_factory):
    scan = covseg.read_scan(real_ct / "example_ct.nii.gz")
    seg = LesionSegmenter()
    result = covseg.segment(scan, segmenter=seg, pictures=False)
    lungs = extract_lungs_hu(scan.array, scan.spacing) > 0
    return {"scan": scan, "seg": seg, "result": result, "lungs": lungs,
            "affine": nib.load(real_ct / "example_ct.nii.gz").affine,
            "tmp": tmp_path_factory.mktemp("inserted")}


def _ball(shape, centre, radius_mm, spacing) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return d2 < radius_mm ** 2


def _insertion(base, where: str, shape: str, radius_mm: float) -> np.ndarray:
    """A region inside the lungs: deep in them, or on the chest wall where the right lung is
    thickest (a dependent, pleural-based consolidation), round or patchy."""
    scan, lungs = base["scan"], base["lungs"]
    depth = ndi.distance_transform_edt(lungs, sampling=scan.spacing)
    if where == "deep":
        candidates = np.argwhere(depth > radius_mm)
        centre = candidates[len(candidates) // 2]
    else:
        z = int(np.argmax(lungs[:, :, : lungs.shape[2] // 2].sum(axis=(1, 2))))  # right lung: low x
        plane = depth[z, :, : lungs.shape[2] // 2]
        y, x = np.unravel_index(np.argmax(plane), plane.shape)
        edge = np.nonzero(lungs[z, y, :x])[0].min()  # walk out to the lateral chest wall
        centre = np.array([z, y, edge])
    region = _ball(lungs.shape, centre, radius_mm, scan.spacing) & lungs
    if shape == "patchy":  # blotches of ground glass: smoothed noise cut at its median
        noise = ndi.gaussian_filter(np.random.default_rng(1).normal(size=lungs.shape), 1.2)
        region &= noise > np.median(noise[region])
    return region


def _segment_with(base, region: np.ndarray, hu_value: float, tag: str):
    scan = base["scan"]
    hu = scan.array.copy()
    hu[region] = hu_value + np.random.default_rng(0).normal(0, 25, int(region.sum()))
    data = np.transpose(hu, (2, 1, 0))[::-1, ::-1, :]  # covseg's LPS (z, y, x) -> the file's RAS
    path = base["tmp"] / f"{tag}.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.int16), base["affine"]), path)
    return covseg.segment(path, segmenter=base["seg"], pictures=False)


CASES = [("deep", "round", 8, -450), ("deep", "round", 12, -450), ("deep", "round", 12, -20),
         ("deep", "patchy", 12, -450), ("pleura", "round", 12, -450)]


@pytest.mark.parametrize("where, shape, radius_mm, hu_value", CASES)
def test_inserted_lesions_are_found_with_their_volume(base, where, shape, radius_mm, hu_value):
    region = _insertion(base, where, shape, radius_mm)
    voxel_ml = base["scan"].voxel_volume_ml
    truth_ml = region.sum() * voxel_ml
    assert truth_ml > 0.5
    result = _segment_with(base, region, hu_value, f"{where}_{shape}_{radius_mm}_{hu_value}")
    before = base["result"]
    found = (result.labels == 1) & region
    found_ml = found.sum() * voxel_ml
    assert abs(found_ml - truth_ml) <= 0.15 * truth_ml, (found_ml, truth_ml)
    lung_before = before.quantification.lung_ml
    assert abs(result.quantification.lung_ml - lung_before) <= 0.01 * lung_before
    outside = ~ndi.binary_dilation(region, iterations=2)  # the model's context blurs the edge
    changed = ((result.labels == 1) != (before.labels == 1)) & outside
    assert changed.sum() * voxel_ml < 1.0  # mL: the rest of the lungs is left as it was


def test_density_figures_add_up_and_the_gate_is_recorded(base):
    report = base["result"].report
    density, gate = report.density, report.density_gate
    lung_ml = report.quantification.lung_ml
    total = sum(b.ml for b in density.bands.values())
    assert abs(total - lung_ml) < 0.01 * lung_ml
    assert abs(sum(b.percent for b in density.bands.values()) - 100) < 0.1
    assert -950 < density.mean_lung_hu < -500
    assert density.bands["well_aerated"].called_abnormal_ml == 0.0  # gated out
    assert "-700" in gate.rule and gate.removed_ml > 0
    labels, hu = base["result"].labels, base["scan"].array
    assert np.median(hu[labels == 1]) - np.median(hu[labels == 2]) > 100  # anchored to density


def test_summary_csv_carries_the_density(cli, tmp_path):
    import csv

    from covseg.demo import save_phantom

    for seed in (0, 1):
        save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6), seed=seed),
                     tmp_path / f"ct{seed}.nii.gz")
    code, _, err = cli("segment", tmp_path / "ct0.nii.gz", tmp_path / "ct1.nii.gz", "-o", tmp_path / "out")
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    for row in rows:
        assert -900 < float(row["mean_lung_hu"]) < -700  # the phantom's lung is -850 HU, lesions denser
        assert 50 < float(row["well_aerated_percent"]) <= 100


def test_report_html_shows_the_density(cli, tmp_path):
    from covseg.demo import save_phantom

    save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)), tmp_path / "ct.nii.gz")
    code, _, err = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "out")
    assert code == 0, err
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Lung density" in page and "well aerated (-950..-700)" in page
    assert 'aria-label="lung HU histogram"' in page and "Mean lung density" in page
