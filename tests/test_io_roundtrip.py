"""Results go back into the source's geometry, voxel for voxel, and never over a user's file."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from covseg.errors import OutputExistsError
from covseg.io import read_scan, write_mask


def test_nifti_mask_keeps_affine_and_voxels(real_ct, tmp_path):
    src = real_ct / "example_ct.nii.gz"
    scan = read_scan(src)
    mask = (scan.array > -300).astype(np.uint8)
    out = write_mask(scan, mask, tmp_path / "mask.nii.gz")
    written, original = nib.load(out), nib.load(src)
    assert np.array_equal(written.affine, original.affine)
    assert written.shape == original.shape
    assert np.array_equal(np.asarray(written.dataobj) > 0, np.asarray(original.dataobj) > -300)


@pytest.mark.parametrize("which", ["dicom_slices", "dicom_slices/0.dcm"])
def test_dicom_mask_has_the_series_geometry(real_ct, tmp_path, which):
    src = real_ct / which
    scan = read_scan(src)
    mask = (scan.array > -300).astype(np.uint8)
    out = write_mask(scan, mask, tmp_path / "mask.nii.gz")
    ref = sitk.ReadImage(str(src)) if src.is_file() else sitk.ReadImage(
        sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(src)))
    got = sitk.ReadImage(str(out))
    assert got.GetSize()[:2] == ref.GetSize()[:2]
    assert np.allclose(got.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    assert np.allclose(got.GetSpacing()[:2], ref.GetSpacing()[:2])
    assert np.allclose(np.array(got.GetDirection()).reshape(3, 3)[:2, :2],
                       np.array(ref.GetDirection()).reshape(ref.GetDimension(), -1)[:2, :2])
    hu = sitk.GetArrayFromImage(ref).reshape(-1, *mask.shape[1:])
    assert np.array_equal(sitk.GetArrayFromImage(got).reshape(hu.shape) > 0, hu > -300)


def test_picture_mask_is_png_of_the_same_size(data_dir, tmp_path):
    scan = read_scan(data_dir / "anamnet_samples" / "slice_50.jpeg")
    mask = (scan.array > 128).astype(np.uint8)
    out = write_mask(scan, mask, tmp_path / "mask.png")
    assert np.array_equal(np.asarray(Image.open(out)), mask[0])


def test_existing_file_is_never_replaced_without_force(real_ct, tmp_path):
    scan = read_scan(real_ct / "dicom_slices" / "0.dcm")
    target = tmp_path / "mask.nii.gz"
    target.write_bytes(b"the user's own file")
    with pytest.raises(OutputExistsError):
        write_mask(scan, np.zeros(scan.array.shape, np.uint8), target)
    assert target.read_bytes() == b"the user's own file"
    write_mask(scan, np.zeros(scan.array.shape, np.uint8), target, force=True)
    assert sitk.ReadImage(str(target)).GetSize()[:2] == (512, 512)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]  # no temporary left
