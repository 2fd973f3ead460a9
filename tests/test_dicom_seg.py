"""lesions.seg.dcm: a DICOM Segmentation that PACS can read, matching the NIfTI masks voxel for voxel."""
from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from builders import write_dicom_series
from covseg.demo import make_phantom, save_phantom
from covseg.infer import LesionSegmenter
from covseg.pipeline import segment

SEGMENT_LABELS = ["abnormal lung (COVID-19 lesion)", "right lung", "left lung"]


@pytest.fixture(scope="module")
def segmenter():
    return LesionSegmenter()


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """The small phantom as a DICOM series whose file order runs head to feet (reversed z), so
    matching by file order instead of by position would be caught."""
    p = make_phantom(shape=(32, 128, 128), spacing=(5.0, 2.8, 2.8))
    n = p.hu.shape[0]
    folder = tmp_path_factory.mktemp("series") / "ct"
    return write_dicom_series(p.hu, p.spacing, folder, positions=[(n - 1 - k) * 5.0 for k in range(n)])


@pytest.fixture(scope="module")
def segmented(series, tmp_path_factory, segmenter):
    out = tmp_path_factory.mktemp("out")
    result = segment(series, out, segmenter=segmenter, pictures=False)
    return out, result


def _nifti_plane(img: nib.Nifti1Image, ds: pydicom.Dataset) -> np.ndarray:
    """The NIfTI mask's plane under one source image, found through the NIfTI affine (RAS) and
    the image's ImagePositionPatient (LPS), independently of covseg's own matching."""
    lps = np.array([float(v) for v in ds.ImagePositionPatient])
    ras = np.array([-lps[0], -lps[1], lps[2], 1.0])
    i, j, k = (np.linalg.inv(img.affine) @ ras)[:3]
    assert abs(i) < 1e-3 and abs(j) < 1e-3, "a source image's first pixel is a NIfTI corner"
    data = np.asarray(img.dataobj)
    return data[:, :, int(round(k))].T  # NIfTI (column, row) -> DICOM (row, column)


def test_dicom_input_writes_a_seg_matching_the_nifti_masks(series, segmented):
    out, result = segmented
    path = out / "lesions.seg.dcm"
    assert path.is_file() and (out / "lesions.nii.gz").is_file()
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.glob("*.dcm"))]
    raw = pydicom.dcmread(path)
    assert raw.Modality == "SEG" and raw.SegmentationType == "BINARY"
    assert raw.StudyInstanceUID == sources[0].StudyInstanceUID
    assert raw.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID

    seg = hd.seg.segread(path)
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == SEGMENT_LABELS
    codes = [(s.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
              s.SegmentedPropertyTypeCodeSequence[0].CodeValue) for s in seg.SegmentSequence]
    assert codes == [("49755003", "52988006"), ("91723000", "3341006"), ("91723000", "44029006")]
    report = json.loads((out / "report.json").read_text())
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert report["model"]["name"] in algo.AlgorithmName
    assert algo.AlgorithmVersion == report["covseg_version"]
    assert f"weights_sha256={report['model']['weights_sha256']}" in algo.AlgorithmParameters

    uids = [s.SOPInstanceUID for s in sources]
    assert {u[2] for u in seg.get_source_image_uids()} == set(uids)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2, 3],
                                               assert_missing_frames_are_empty=True)
    lesions, lungs = nib.load(out / "lesions.nii.gz"), nib.load(out / "lungs.nii.gz")
    for n, ds in enumerate(sources):
        lesion_plane, lung_plane = _nifti_plane(lesions, ds), _nifti_plane(lungs, ds)
        assert np.array_equal(pixels[n, ..., 0] > 0, lesion_plane == 1)
        assert np.array_equal(pixels[n, ..., 1] > 0, lung_plane == 1)
        assert np.array_equal(pixels[n, ..., 2] > 0, lung_plane == 2)
    assert pixels[..., 0].any() and pixels[..., 1].any() and pixels[..., 2].any()
    assert int(pixels[..., 0].astype(bool).sum()) == int((result.labels == 1).sum())


def test_fractional_seg_only(series, tmp_path, segmenter):
    out = tmp_path / "out"
    result = segment(series, out, segmenter=segmenter, pictures=False, formats=("dicom-seg",),
                     seg_type="fractional")
    assert (out / "lesions.seg.dcm").is_file() and not (out / "lesions.nii.gz").exists()
    seg = hd.seg.segread(out / "lesions.seg.dcm")
    assert seg.SegmentationType == "FRACTIONAL"
    uids = [u[2] for u in seg.get_source_image_uids()]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 3])
    assert pixels.max() == pytest.approx(1.0)
    assert int((pixels[..., 0] > 0.5).sum()) == int((result.labels == 1).sum())
    assert int((pixels[..., 1:] > 0.5).sum()) == int((result.lungs > 0).sum())


def test_cli_formats(series, tmp_path, cli):
    code, out, err = cli("segment", series, "-o", tmp_path / "a", "--format", "nifti")
    assert code == 0, err
    assert (tmp_path / "a" / "lesions.nii.gz").is_file()
    assert not (tmp_path / "a" / "lesions.seg.dcm").exists()
    code, out, err = cli("segment", series, "-o", tmp_path / "b", "--seg-type", "fractional")
    assert code == 0, err
    assert "DICOM-SEG" in out and (tmp_path / "b" / "lesions.seg.dcm").is_file()
    code, _, err = cli("segment", series, "-o", tmp_path / "c", "--format", "nifti,pdf")
    assert code == 2 and "--format" in err and len(err.strip().splitlines()) == 1


def test_nifti_input_keeps_nifti_and_refuses_dicom_seg(tmp_path, cli):
    ct = save_phantom(make_phantom(shape=(32, 128, 128), spacing=(5.0, 2.8, 2.8)), tmp_path / "p.nii.gz")
    code, _, err = cli("segment", ct, "-o", tmp_path / "seg", "--format", "dicom-seg")
    assert code == 2 and "dicom-seg" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "seg").exists() or not any((tmp_path / "seg").iterdir())
    code, _, err = cli("segment", ct, "-o", tmp_path / "default")
    assert code == 0, err
    assert not (tmp_path / "default" / "lesions.seg.dcm").exists()
    assert (tmp_path / "default" / "lesions.nii.gz").is_file()


def test_real_slices_without_frame_of_reference(real_ct, tmp_path, cli):
    """The real slices carry no FrameOfReferenceUID: by default NIfTI only, asked for a SEG a
    one-line refusal before any work."""
    code, _, err = cli("segment", real_ct / "dicom_slices", "-o", tmp_path / "a", "--format",
                       "dicom-seg")
    assert code == 2 and "FrameOfReferenceUID" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    code, _, err = cli("segment", real_ct / "dicom_slices", "-o", tmp_path / "b")
    assert code == 0, err
    assert (tmp_path / "b" / "lesions.nii.gz").is_file()
    assert not (tmp_path / "b" / "lesions.seg.dcm").exists()
