"""`covseg info`: the facts of a scan and warnings when it is not a chest CT in HU."""
from __future__ import annotations

import json

import numpy as np

from covseg import __version__


def test_version_and_help(cli):
    import pytest
    for flag in ("--version", "--help"):
        with pytest.raises(SystemExit) as exc:
            cli(flag)
        assert exc.value.code == 0


def test_version_string(capsys):
    import pytest
    from covseg.cli import main
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_info_on_real_nifti(cli, real_ct):
    code, out, err = cli("info", real_ct / "example_ct.nii.gz")
    assert code == 0, err
    assert "112 x 101 x 122" in out
    assert "3 x 3 x 3" in out
    assert "RAS" in out
    assert "intensity    hu" in out


def test_info_json_on_dicom(cli, real_ct):
    code, out, _ = cli("info", "--json", real_ct / "dicom_slices")
    info = json.loads(out)
    assert info["shape_zyx"] == [2, 512, 512]
    assert info["format"] == "dicom-series"
    assert info["intensity"] == "hu"


def test_info_warns_on_8bit_picture(cli, data_dir):
    code, out, _ = cli("info", data_dir / "anamnet_samples" / "slice_292.jpeg")
    assert code == 0
    assert "warning: 8-bit picture, not HU" in out


def test_info_warns_on_mr_like_volume(cli, tmp_path):
    np.save(tmp_path / "mr.npy", np.random.default_rng(0).uniform(0, 4000, (8, 64, 64)).astype(np.float32))
    code, out, _ = cli("info", tmp_path / "mr.npy")
    assert code == 0
    assert "not a CT in HU" in out


def test_info_warns_without_lung_density(cli, real_ct, tmp_path):
    import nibabel as nib
    img = nib.load(real_ct / "example_ct.nii.gz")
    soft = np.clip(np.asarray(img.dataobj), -500, None).astype(np.int16)  # air kept, no lung
    soft[0, 0, 0] = -1000
    nib.save(nib.Nifti1Image(soft, img.affine), tmp_path / "nolung.nii.gz")
    code, out, _ = cli("info", tmp_path / "nolung.nii.gz")
    assert "lung density" in out and "may not cover the chest" in out
