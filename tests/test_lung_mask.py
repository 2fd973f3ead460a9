"""A user's own lung mask (`--lung-mask`, API `lung_mask=`) replaces covseg's lung extraction."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

import covseg
from covseg.demo import save_phantom


def test_a_given_lung_mask_is_used_and_recorded(tmp_path):
    phantom = covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6))
    save_phantom(phantom, tmp_path / "ct.nii.gz")
    one_lung = phantom.lungs == 1  # only the right lung given: the results must follow it
    result = covseg.segment(tmp_path / "ct.nii.gz", lung_mask=one_lung, pictures=False)
    report = result.report.to_dict() if hasattr(result.report, "to_dict") else result.report
    assert report["preprocessing"]["lungs"] == "given"
    assert np.array_equal(result.lungs > 0, one_lung)
    assert (result.labels[~one_lung] == 0).all()


def test_cli_takes_a_mask_file_for_a_picture_and_refuses_a_wrong_grid(cli, tmp_path):
    phantom = covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6))
    z = 12
    picture = np.clip((phantom.hu[z] + 1000) / 1400 * 255, 0, 255).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "slice.png")
    Image.fromarray((phantom.lungs[z] > 0).astype(np.uint8) * 255).save(tmp_path / "lungs.png")
    code, _, err = cli("segment", tmp_path / "slice.png", "-o", tmp_path / "out",
                       "--lung-mask", tmp_path / "lungs.png")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["preprocessing"]["lungs"] == "given"
    small = np.zeros((50, 60), np.uint8)
    small[10:30, 10:40] = 255
    Image.fromarray(small).save(tmp_path / "small.png")
    code, _, err = cli("segment", tmp_path / "slice.png", "-o", tmp_path / "out2",
                       "--lung-mask", tmp_path / "small.png")
    assert code == 2 and "lung mask has shape" in err and not (tmp_path / "out2").exists()
