"""Reading every supported format into the one (z, y, x) form."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from covseg.errors import InputError
from covseg.intensity import Intensity
from covseg.io import read_scan


def test_nifti_is_reoriented_to_lps_zyx(real_ct):
    scan = read_scan(real_ct / "example_ct.nii.gz")  # 122 x 101 x 112, RAS, 3 mm
    assert scan.array.shape == (112, 101, 122)
    assert scan.spacing == (3.0, 3.0, 3.0)
    assert scan.intensity is Intensity.HU
    assert scan.array.dtype == np.float32
    import nibabel as nib
    raw = np.asarray(nib.load(real_ct / "example_ct.nii.gz").dataobj)
    # RAS -> LPS flips x and y: voxel (i, j, k) of the file is array[k, ny-1-j, nx-1-i]
    assert scan.array[5, 101 - 1 - 7, 122 - 1 - 9] == raw[9, 7, 5]


def test_dicom_series_orders_slices_by_position(real_ct, tmp_path):
    import pydicom
    # name the files against their position order: the reader must use the positions
    for src, dst in (("0.dcm", "b.dcm"), ("1.dcm", "a.dcm")):
        (tmp_path / dst).write_bytes((real_ct / "dicom_slices" / src).read_bytes())
    scan = read_scan(tmp_path)
    assert scan.array.shape == (2, 512, 512)
    assert scan.format == "dicom-series"
    z0 = pydicom.dcmread(real_ct / "dicom_slices" / "0.dcm")
    expected = z0.pixel_array * float(z0.RescaleSlope) + float(z0.RescaleIntercept)
    assert np.array_equal(scan.array[0], expected.astype(np.float32))  # position 0 -> first
    assert scan.spacing == pytest.approx((1.0, 0.625, 0.625))
    assert scan.intensity is Intensity.HU


def test_single_dicom(real_ct):
    scan = read_scan(real_ct / "dicom_slices" / "1.dcm")
    assert scan.array.shape == (1, 512, 512)
    assert scan.format == "dicom"
    assert scan.array.min() < -900 and scan.array.max() > 0


def test_picture_is_display_intensity(data_dir):
    scan = read_scan(data_dir / "anamnet_samples" / "slice_122.jpeg")
    assert scan.array.shape == (1, 512, 512)
    assert scan.intensity is Intensity.DISPLAY
    assert not scan.spacing_known


def test_mat_needs_a_key_when_it_holds_several_images(data_dir):
    path = data_dir / "anamnet_samples" / "sampledata.mat"
    with pytest.raises(InputError, match="several images.*--key"):
        read_scan(path)
    scan = read_scan(path, key="im2")
    assert scan.array.shape == (1, 512, 512)


def test_mat_and_npy_volumes(tmp_path):
    vol = np.random.default_rng(0).uniform(-1000, 400, (3, 32, 40)).astype(np.float32)
    scipy.io.savemat(tmp_path / "v.mat", {"ct": vol})
    np.save(tmp_path / "v.npy", vol)
    for name in ("v.mat", "v.npy"):
        scan = read_scan(tmp_path / name)
        assert scan.array.shape == (3, 32, 40)
        assert scan.intensity is Intensity.HU


def test_png_slice(tmp_path):
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1))).save(tmp_path / "s.png")
    scan = read_scan(tmp_path / "s.png")
    assert scan.array.shape == (1, 64, 64)
    assert scan.intensity is Intensity.DISPLAY


def test_stray_nan_and_inf_are_replaced_and_noted(tmp_path):
    a = np.full((3, 32, 32), -1000.0, np.float32)
    a[1, 10:20, 10:20] = 40.0
    a[0, 0, :3] = np.nan
    a[2, 5, 5] = np.inf
    np.save(tmp_path / "a.npy", a)
    scan = read_scan(tmp_path / "a.npy")
    assert np.isfinite(scan.array).all()
    assert (scan.array[0, 0, :3] == -1000.0).all() and scan.array[2, 5, 5] == -1000.0
    assert any("4 NaN/infinite voxels replaced by -1000" in n for n in scan.notes)
