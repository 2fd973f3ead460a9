"""Needs the shared data (skipped without it): ma20's blocks stacked back into per-scan NIfTI
volumes in Ma et al.'s release layout, then trained on and evaluated through the volume path.

ma20 keeps each scan's slices in order, bases to apex (covseg's z order), so a block's slices are
a (partial) volume again; the volume path must hand the model exactly ma20's slices.
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from builders import write_nifti
from PIL import Image

from covseg.data.datasets import load_test_set
from covseg.data.ma20 import load_ma20, read_blocks
from covseg.train import train
from covseg.train.config import config_from_dict

BLOCKS = {1: "coronacases_org_001", 3: "coronacases_org_003", 9: "coronacases_org_009",
          14: "radiopaedia_org_covid-19-pneumonia-14_85914_0-dcm"}
PER_BLOCK = 6


@pytest.fixture(scope="module")
def ma_release(data_dir, tmp_path_factory):
    """Four scans (folds 1, 2, 4, 4) of six slices each, as the release names them, and a split
    file giving each scan its blocks.csv fold; returns (folder, {case: ma20 slice indices})."""
    root = tmp_path_factory.mktemp("ma2020")
    blocks = {b["block"]: b for b in read_blocks(data_dir / "ma20")}
    picked, folds = {}, {}
    for block, name in BLOCKS.items():
        b = blocks[block]
        index = np.linspace(b["first_index"], b["last_index"], PER_BLOCK).astype(int)
        stack = {kind: np.stack([np.asarray(Image.open(data_dir / "ma20" / kind / f"{i:04d}.png"))
                                 for i in index]) for kind in ("ct", "lungs", "covid")}
        mask_name = name.replace("coronacases_org_", "coronacases_").replace(
            "radiopaedia_org_covid-19-pneumonia-", "radiopaedia_").replace("-dcm", "")
        spacing = (5.0, 1.4, 1.4)  # ma20 kept no spacing: the model's 1.4 mm, so no resampling
        write_nifti(stack["ct"], spacing, root / "COVID-19-CT-Seg_20cases" / f"{name}.nii.gz")
        write_nifti((stack["lungs"] > 0).astype(np.uint8), spacing,
                    root / "Lung_Mask" / f"{mask_name}.nii.gz")
        write_nifti((stack["covid"] > 0).astype(np.uint8), spacing,
                    root / "Infection_Mask" / f"{mask_name}.nii.gz")
        picked[mask_name], folds[mask_name] = index, b["fold"]
    (root / "folds.yaml").write_text(yaml.safe_dump({"fold": folds}))
    return root, picked


def _config(root, tmp_path, **extra):
    return config_from_dict({
        "name": "ma2020_volumes", "model": "anamnet", "loss": "dice_ce", "lr": 0.003,
        "schedule": "constant", "epochs": 1, "steps_per_epoch": 3, "batch_size": 2, "crop": 64,
        "intensity_jitter": False, "threads": 2, "precision": "fp32", **extra,
        "data": {"dataset": "folder", "preset": "ma2020", "path": str(root), "recipe": "enhanced",
                 "cache": str(tmp_path / "cache"), "split": {"file": "folds.yaml", "fold": 4}}})


def test_needs_data_volume_path_gives_ma20s_own_slices(ma_release, tmp_path):
    root, picked = ma_release
    test = load_test_set(_config(root, tmp_path).data)
    assert sorted(set(test.cases)) == ["coronacases_009", "radiopaedia_14_85914_0"]
    fold4 = load_ma20(folds=[4])
    where = {int(s.split("/")[1]): k for k, s in enumerate(fold4.ids)}
    for case in set(test.cases):
        rows = [k for k, c in enumerate(test.cases) if c == case]
        ref = fold4.subset([where[i] for i in picked[case]])
        assert np.allclose(test.images[rows], ref.images / 255.0, atol=1e-6)
        assert np.array_equal(test.labels[rows], ref.labels)
        assert np.array_equal(test.lungs[rows], ref.lungs)
        assert test.case_info[case]["lung_source"].startswith("lung mask")


def test_needs_data_train_and_evaluate_through_the_volume_path(ma_release, tmp_path):
    from covseg.evaluate import dice, evaluate_model
    from covseg.data.datasets import model_inputs
    from covseg.infer import LesionSegmenter

    root, picked = ma_release
    cfg = _config(root, tmp_path)
    record = train(cfg, tmp_path / "run", progress=False)
    assert record["step"] == 3 and (tmp_path / "run" / "model.pt").is_file()
    path = tmp_path / "ma2020.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    trained = evaluate_model(config=path, cases_path=tmp_path / "cases.csv",
                             segmenter=LesionSegmenter(tmp_path / "run" / "model.pt", model="anamnet"))
    assert trained.per_case.summary()["cases"] == 2
    # the shipped model scores the stacked slices exactly as it scores ma20's own
    shipped = LesionSegmenter()
    volumes = evaluate_model(config=path, segmenter=shipped)
    fold4 = load_ma20(folds=[4])
    where = {int(s.split("/")[1]): k for k, s in enumerate(fold4.ids)}
    test = load_test_set(cfg.data)
    ref = fold4.subset([where[i] for c in dict.fromkeys(test.cases) for i in picked[c]])
    preds = shipped.predict(model_inputs(ref, cfg.data), ref.lungs)
    assert [r["abnormal_dice"] for r in volumes.rows] == [dice(p, t, 1) for p, t in zip(preds, ref.labels)]
    summary = volumes.per_case.summary()
    print("shipped Anam-Net on the stacked fold-4 scans:", summary)
    assert summary["mean_case_dice_3d"] > 0.3
