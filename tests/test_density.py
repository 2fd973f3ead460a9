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
from covseg.demo.insert import insert, insertion_region
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


def _segment_with(base, region: np.ndarray, hu_value: float, tag: str):
    scan = base["scan"]
    hu = insert(scan.array, region, hu_value)
    data = np.transpose(hu, (2, 1, 0))[::-1, ::-1, :]  # covseg's LPS (z, y, x) -> the file's RAS
    path = base["tmp"] / f"{tag}.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.int16), base["affine"]), path)
    return covseg.segment(path, segmenter=base["seg"], pictures=False)


# (where, shape, radius mm, HU, away from the scan's end): the rows of docs/results.md that pass
CASES = [("deep", "round", 8, -450, False), ("deep", "round", 12, -450, False),
         ("deep", "round", 12, -20, False), ("deep", "patchy", 12, -450, False),
         ("pleura", "round", 8, -450, False), ("pleura", "round", 12, -450, False),
         ("pleura", "round", 12, -20, False), ("pleura", "round", 18, -450, False),
         ("pleura", "round", 8, -450, True), ("pleura", "round", 12, -450, True),
         ("pleura", "round", 18, -450, True)]


@pytest.mark.parametrize("where, shape, radius_mm, hu_value, inside_scan", CASES)
def test_inserted_lesions_are_found_with_their_volume(base, where, shape, radius_mm, hu_value,
                                                      inside_scan):
    region = insertion_region(base["lungs"], base["scan"].spacing, where, shape, radius_mm,
                              inside_scan)
    voxel_ml = base["scan"].voxel_volume_ml
    truth_ml = region.sum() * voxel_ml
    assert truth_ml > 0.5
    result = _segment_with(base, region, hu_value, f"{where}_{shape}_{radius_mm}_{hu_value}_{inside_scan}")
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


def _gate_case(blob_touches: bool, vessel: bool = False):
    """One 1 mm slice of lung (-850 HU) holding a hazy lesion the model called (-500 HU) and a
    dense 6 mm-radius opacity (-20 HU) the model left normal, beside it or apart; optionally a
    thin dense vessel (2 mm) touching the lesion."""
    from covseg.labels import ABNORMAL, NORMAL

    yy, xx = np.mgrid[:80, :80]
    labels = np.full((1, 80, 80), NORMAL, np.uint8)
    hu = np.full((1, 80, 80), -850.0)
    rim = (yy - 40) ** 2 + (xx - 20) ** 2 < 6 ** 2
    labels[0][rim], hu[0][rim] = ABNORMAL, -500.0
    blob = (yy - 40) ** 2 + (xx - (30 if blob_touches else 60)) ** 2 < 6 ** 2
    hu[0][blob & ~rim] = -20.0
    if vessel:
        hu[0, 10:34, 19:21] = 40.0
    return labels, hu, blob & ~rim


def test_dense_lung_joining_a_lesion_is_taken_in_and_dense_lung_alone_is_reported():
    from covseg.infer.density import gate_by_density

    labels, hu, blob = _gate_case(blob_touches=True)
    gate = gate_by_density(labels, hu, (1.0, 1.0, 1.0))
    assert (labels[0][blob] == 1).all() and gate.dense_taken_voxels == blob.sum()
    labels, hu, blob = _gate_case(blob_touches=False)
    gate = gate_by_density(labels, hu, (1.0, 1.0, 1.0))
    assert (labels[0][blob] == 2).all() and gate.dense_taken_voxels == 0
    assert gate.dense_missed_voxels > 0.5 * blob.sum()  # reported (the opening trims its edge)


def test_a_thin_vessel_touching_a_lesion_is_not_taken_in():
    """Only the vessel's one voxel that touches the lesion is taken (the lesion's edge rule)."""
    from covseg.infer.density import gate_by_density

    labels, hu, _ = _gate_case(blob_touches=False, vessel=True)
    gate_by_density(labels, hu, (1.0, 1.0, 1.0))
    assert (labels[0, 10:33, 19:21] == 2).all()


def test_a_lesion_edge_is_taken_in_where_it_is_dense_and_not_where_it_is_aerated():
    """A called lesion with a one-voxel ring the model called normal: taken in above EDGE_HU,
    left normal in aerated lung and in the haze between (-600 HU); nothing beyond the ring."""
    from covseg.infer.density import EDGE_HU, gate_by_density
    from covseg.labels import ABNORMAL, NORMAL

    zz, yy, xx = np.mgrid[:7, :40, :40]
    core = (zz - 3) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 4
    cube = np.ones((3, 3, 3), bool)
    ring = ndi.binary_dilation(core, cube) & ~core
    shell = ndi.binary_dilation(core | ring, cube) & ~(core | ring)
    for ring_hu, taken in ((EDGE_HU + 60, True), (-600.0, False), (-850.0, False)):
        labels = np.full(core.shape, NORMAL, np.uint8)
        labels[core] = ABNORMAL
        hu = np.full(core.shape, -850.0)
        hu[core], hu[ring], hu[shell] = -450.0, ring_hu, EDGE_HU + 60  # the shell: dense, not touching
        gate = gate_by_density(labels, hu, (3.0, 3.0, 3.0))
        assert (labels[ring] == (ABNORMAL if taken else NORMAL)).all()
        assert gate.edge_taken_voxels == (int(ring.sum()) if taken else 0)
        assert (labels[shell] == NORMAL).all()


def test_the_gate_works_slice_by_slice_without_box_sized_temporaries():
    """At 600 slices of 512 x 512 a box-sized float mean alone was 275 MB, the scan's peak: the
    gate's allocations must not grow with the number of slices."""
    import tracemalloc

    from covseg.infer.density import gate_by_density
    from covseg.labels import ABNORMAL, NORMAL

    def peak(slices: int) -> int:
        rng = np.random.default_rng(0)
        shape = (slices, 160, 160)
        labels = np.zeros(shape, np.uint8)
        labels[:, 16:144, 16:144] = NORMAL
        sick = ndi.gaussian_filter(rng.normal(size=shape), 3) > 0.05
        labels[sick & (labels == NORMAL)] = ABNORMAL
        hu = np.where(sick, -300.0, -850.0).astype(np.float32)
        hu[:4, 60:80, 60:80] = 20.0  # dense lung next to lesions: the joining pass runs too
        tracemalloc.start()
        gate = gate_by_density(labels, hu, (1.0, 1.0, 1.0))
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert gate.dense_taken_voxels > 0 and gate.edge_taken_voxels > 0
        return used

    assert peak(96) < 1.5 * peak(24)  # a box-sized temporary would make it 4 times
