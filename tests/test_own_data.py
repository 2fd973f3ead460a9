"""A user's own labelled data by layout, built in code: pairing, labels, the lung class, planes,
splits by patient, clear refusals, and training that runs and resumes through the volume path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from builders import PHANTOM_SPACING, phantoms, write_dicom_series, write_mosmed, write_nifti

from covseg.data.datasets import load_test_set, load_training_set
from covseg.data.splits import Split, assign
from covseg.data.volumes import discover, load_all, to_planes
from covseg.errors import InputError
from covseg.labels import ABNORMAL, NORMAL
from covseg.train import train
from covseg.train.config import config_from_dict

TINY = {"name": "own", "model": "anamnet", "loss": "dice_ce", "lr": 0.003, "schedule": "constant",
        "epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "crop": 64, "flips": False,
        "intensity_jitter": False, "threads": 2, "precision": "fp32"}


def _data(root, tmp_path, **extra) -> dict:
    return {"dataset": "folder", "path": str(root), "cache": str(tmp_path / "cache"),
            "pixel_mm": None, "split": {"folds": 2}, **extra}


def _config(data: dict, **extra):
    return config_from_dict({**TINY, **extra, "data": data})


@pytest.fixture(scope="module")
def mosmed(tmp_path_factory):
    return write_mosmed(tmp_path_factory.mktemp("mosmed"), n=4, unlabelled=1)


def test_mosmed_preset_pairs_studies_with_masks(mosmed, tmp_path):
    data = _config(_data(mosmed, tmp_path, preset="mosmed")).data
    cases, roles = discover(data)
    assert [c.id for c in cases] == ["study_0000", "study_0001", "study_0002", "study_0003"]
    assert roles is None  # a binary lesion mask
    assert cases[0].label.name == "study_0000_mask.nii.gz"


def test_lungs_come_from_covseg_when_no_mask_gives_them(mosmed, tmp_path):
    """Documented: extracted lungs joined with every lesion; normal = that minus lesions; test
    slices masked by the extractor alone; recorded per case."""
    data = _config(_data(mosmed, tmp_path, preset="mosmed")).data
    test = load_test_set(data)
    truth = {f"study_{k:04d}": ph for k, ph in enumerate(phantoms(4))}
    for case in set(test.cases):
        info = test.case_info[case]
        assert info["lung_source"] == "covseg.lungs:hu" and not info["lungs_given"]
        rows = [i for i, c in enumerate(test.cases) if c == case]
        labels, lungs = test.labels[rows], test.lungs[rows]
        lesion = truth[case].lesions
        assert np.array_equal(labels == ABNORMAL, lesion)  # every reference lesion counts
        assert not (lungs & ~(labels > 0)).any()  # the input mask lies inside the labelled region
        found = (labels == NORMAL) | (labels == ABNORMAL)
        dice = 2 * (found & (truth[case].lungs > 0)).sum() / (found.sum() + (truth[case].lungs > 0).sum())
        assert dice > 0.9  # the HU extractor finds the phantom's lungs
    assert len(test) == 40  # two test cases, every one of their 20 slices


def test_given_lung_masks_make_the_normal_class(tmp_path):
    """Ma et al.'s layout: lungs from their lung mask; a lesion outside it is not abnormal."""
    root = tmp_path / "ma"
    for k, ph in enumerate(phantoms(2)):
        write_nifti(ph.hu, ph.spacing, root / "COVID-19-CT-Seg_20cases" / f"coronacases_org_00{k}.nii.gz")
        lungs = ph.lungs.copy()
        lungs[:, :, :48] = 0  # the given mask holds the left lung only
        write_nifti(lungs, ph.spacing, root / "Lung_Mask" / f"coronacases_00{k}.nii.gz")
        lesions = ph.lesions.astype(np.uint8)
        write_nifti(lesions, ph.spacing, root / "Infection_Mask" / f"coronacases_00{k}.nii.gz")
    data = _config(_data(root, tmp_path, preset="ma2020")).data
    test = load_test_set(data)
    case = test.cases[0]
    ph = phantoms(2)[int(case[-1])]
    lungs = ph.lungs.copy() > 0
    lungs[:, :, :48] = False
    assert test.case_info[case]["lung_source"] == "lung mask coronacases_00%s.nii.gz" % case[-1]
    assert np.array_equal(test.labels == ABNORMAL, ph.lesions & lungs)
    assert np.array_equal(test.labels == NORMAL, lungs & ~ph.lesions)
    assert np.array_equal(test.lungs, lungs)
    assert test.case_info[case]["lesion_outside_lungs_px"] == int((ph.lesions & ~lungs).sum())


def test_coronal_slices_are_head_up_and_resampled(mosmed, tmp_path):
    volume = np.zeros((4, 5, 6))
    volume[3, 1, 2] = 1  # top slice (head end)
    planes = to_planes(volume, "coronal")
    assert planes.shape == (5, 4, 6) and planes[1, 0, 2] == 1
    data = _config(_data(mosmed, tmp_path, preset="mosmed", plane="coronal", pixel_mm=3.5,
                         train_slices="all")).data
    train_set = load_training_set(data)
    # 96 coronal slices per case; rows: 20 slices x 6 mm resampled to 3.5 mm (34), padded to 64
    assert train_set.images.shape == (2 * 96, 64, 96)
    info = train_set.case_info[train_set.cases[0]]
    assert info["plane_shape"] == [34, 96]
    assert info["voxel_ml"] == pytest.approx(3.5 * (120 / 34) * 3.5 / 1000)


def test_nnunet_layout_maps_labels_by_name(tmp_path):
    root = tmp_path / "Dataset001_Covid"
    for k, ph in enumerate(phantoms(3)):
        write_nifti(ph.hu, ph.spacing, root / "imagesTr" / f"covid_{k:03d}_0000.nii.gz")
        mask = ph.lesions.astype(np.uint8)
        mask[ph.lesions & (ph.hu > -200)] = 2  # consolidation
        mask[(ph.lungs == 1) & ~ph.lesions] = 3  # the right lung labelled as lung
        write_nifti(mask, ph.spacing, root / "labelsTr" / f"covid_{k:03d}.nii.gz")
    write_nifti(phantoms(1)[0].hu, PHANTOM_SPACING, root / "imagesTs" / "covid_100_0000.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "file_ending": ".nii.gz", "numTraining": 3,
        "labels": {"background": 0, "ground glass": 1, "consolidation": 2, "right lung": 3}}))
    data = _config({**_data(root, tmp_path), "dataset": "nnunet", "split": {"folds": 3}}).data
    cases, roles = discover(data)
    assert [c.id for c in cases] == ["covid_000", "covid_001", "covid_002"]  # imagesTs has no labels
    assert roles == {0: "background", 1: "abnormal", 2: "abnormal", 3: "lung"}
    test = load_test_set(data)
    ph = phantoms(3)[int(test.cases[0][-1])]
    lungs = (ph.lungs == 1) | ph.lesions  # lungs from the label file: lung + abnormal
    assert test.case_info[test.cases[0]]["lung_source"].startswith("lung labels of")
    assert np.array_equal(test.labels == ABNORMAL, ph.lesions & lungs)
    assert np.array_equal(test.labels == NORMAL, (ph.lungs == 1) & ~ph.lesions)


def test_decathlon_dataset_json(tmp_path):
    root = tmp_path / "Task100_Covid"
    for k, ph in enumerate(phantoms(2)):
        write_nifti(ph.hu, ph.spacing, root / "imagesTr" / f"covid_{k}.nii.gz")
        write_nifti(ph.lesions.astype(np.uint8), ph.spacing, root / "labelsTr" / f"covid_{k}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "CT"},
                                                   "labels": {"0": "background", "1": "lesion"}}))
    cases, roles = discover(_config({**_data(root, tmp_path), "dataset": "nnunet"}).data)
    assert len(cases) == 2 and roles == {0: "background", 1: "abnormal"}


def test_dicom_series_images_pair_with_nifti_masks(tmp_path):
    root = tmp_path / "hospital"
    for k, ph in enumerate(phantoms(2)):
        write_dicom_series(ph.hu, ph.spacing, root / f"patient{k}" / "ct")
        write_nifti(ph.lesions.astype(np.uint8), ph.spacing, root / f"patient{k}" / "lesions.nii.gz")
    layout = {"image": "{case}/ct", "label": "{case}/lesions.nii.gz"}
    test = load_test_set(_config(_data(root, tmp_path, layout=layout)).data)
    ph = phantoms(2)[int(test.cases[0][-1])]
    assert np.array_equal(test.labels == ABNORMAL, ph.lesions)
    shifted = tmp_path / "shifted"
    write_dicom_series(ph.hu, ph.spacing, shifted / "p" / "ct")
    write_nifti(ph.lesions.astype(np.uint8), ph.spacing, shifted / "p" / "lesions.nii.gz",
                origin_mm=(0, 0, 30))
    with pytest.raises(InputError, match=r"lesions.nii.gz: not on the grid of its image .*origin 30.00 mm"):
        load_all(_config(_data(shifted, tmp_path, layout=layout)).data)


def test_pictures_split_by_patient(tmp_path):
    from PIL import Image

    root = tmp_path / "pictures"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for patient in range(4):
        for k in range(3):
            picture = rng.integers(0, 255, (64, 64), dtype=np.uint8)
            mask = np.zeros((64, 64), np.uint8)
            mask[20:30, 20 + k:30 + k] = 255
            Image.fromarray(picture).save(root / "images" / f"p{patient}_{k}.png")
            Image.fromarray(mask).save(root / "masks" / f"p{patient}_{k}.png")
    layout = {"image": "images/{patient}_{case}.png", "label": "masks/{patient}_{case}.png"}
    data = {**_data(root, tmp_path, layout=layout, split={"folds": 2, "seed": 3}), "dataset": "pictures"}
    train_set = load_training_set(_config(data).data)
    test = load_test_set(_config(data).data)
    patients = {train_set.case_info[c]["patient"] for c in train_set.cases}
    assert patients.isdisjoint({test.case_info[c]["patient"] for c in test.cases})
    assert len(train_set) == 6 and len(test) == 6
    assert test.case_info[test.cases[0]]["voxel_ml"] is None  # pictures have no spacing


def test_splits_are_patient_disjoint_and_seeded():
    from covseg.data.layouts import Case

    cases = [Case(f"c{k}", f"p{k // 2}", None, None) for k in range(20)]  # two cases a patient
    tests = []
    for fold in range(5):
        sides = assign(cases, Split(folds=5, fold=fold, seed=7))
        tests.append({p for p, s in sides.items() if s == "test"})
        assert all(sides[c.patient] in ("train", "test") for c in cases)
    assert set().union(*tests) == {f"p{k}" for k in range(10)}  # each patient tested exactly once
    assert sum(len(t) for t in tests) == 10
    assert assign(cases, Split(test=3, seed=1)) == assign(cases, Split(test=3, seed=1))
    assert assign(cases, Split(test=3, seed=1)) != assign(cases, Split(test=3, seed=2))


def test_split_file(tmp_path):
    from covseg.data.layouts import Case

    cases = [Case(f"c{k}", f"p{k}", None, None) for k in range(4)]
    (tmp_path / "folds.yaml").write_text("fold: {p0: 1, p1: 1, p2: 2, p3: 2}\n")
    sides = assign(cases, Split(file=str(tmp_path / "folds.yaml"), fold=2))
    assert sides == {"p0": "train", "p1": "train", "p2": "test", "p3": "test"}
    (tmp_path / "both.yaml").write_text("train: [p0, p1, p2]\ntest: [p2, p3]\n")
    with pytest.raises(InputError, match="p2' is in both"):
        assign(cases, Split(file=str(tmp_path / "both.yaml")))
    (tmp_path / "short.yaml").write_text("train: [p0]\ntest: [p1]\n")
    with pytest.raises(InputError, match="no side for patient"):
        assign(cases, Split(file=str(tmp_path / "short.yaml")))


def _bad_set(tmp_path, problem: str):
    """A MosMed-like folder of two studies with one problem."""
    root = tmp_path / problem
    phs = phantoms(2)
    for k, ph in enumerate(phs):
        write_nifti(ph.hu, ph.spacing, root / "studies" / f"study_{k}.nii.gz")
        mask = ph.lesions.astype(np.uint8)
        if problem == "empty":
            mask[:] = 0
        if problem == "labels" and k == 1:
            mask[ph.lesions] = 4
            mask[0, 0, 0] = 1
        if problem == "shape" and k == 1:
            mask = mask[:, :90]
        write_nifti(mask, (ph.spacing[0] * (2 if problem == "spacing" and k else 1),) + ph.spacing[1:],
                    root / "masks" / f"study_{k}_mask.nii.gz")
    if problem == "unpaired":
        write_nifti(phs[0].hu, phs[0].spacing, root / "studies" / "study_9.nii.gz")
    if problem == "orphan":
        write_nifti(phs[0].lesions.astype(np.uint8), phs[0].spacing, root / "masks" / "study_7_mask.nii.gz")
    layout = {"image": "studies/{case}.nii.gz", "label": "masks/{case}_mask.nii.gz"}
    return _config(_data(root, tmp_path, layout=layout))


@pytest.mark.parametrize("problem, message", [
    ("unpaired", r"images without a mask \(masks/\{case\}_mask.nii.gz\): .*study_9.nii.gz"),
    ("orphan", r"masks without an image .*study_7_mask.nii.gz"),
    ("shape", r"study_1_mask.nii.gz: not on the grid of its image .*study_1.nii.gz: shape"),
    ("spacing", r"study_1_mask.nii.gz: not on the grid .*spacing"),
    ("labels", r"study_1_mask.nii.gz: labels \[1, 4\] where a binary lesion mask has one"),
    ("empty", r"every mask is empty \(study_0_mask.nii.gz, study_1_mask.nii.gz\)"),
])
def test_a_data_set_with_problems_is_one_line_before_training(tmp_path, problem, message):
    cfg = _bad_set(tmp_path, problem)
    with pytest.raises(InputError, match=message):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_labels_outside_the_mapping(tmp_path):
    cfg = _bad_set(tmp_path, "labels")
    cfg.data.labels = {1: "abnormal", 2: "abnormal"}
    with pytest.raises(InputError, match=r"study_1_mask.nii.gz: label values \[4\] are outside data.labels"):
        load_training_set(cfg.data)


def test_cli_refuses_a_bad_data_set_with_exit_2(tmp_path, cli):
    import yaml

    cfg = _bad_set(tmp_path, "unpaired")
    path = tmp_path / "bad.yaml"
    values = cfg.to_dict()
    path.write_text(yaml.safe_dump(values))
    code, _out, err = cli("train", path, "-o", tmp_path / "run")
    assert code == 2
    assert err.count("\n") == 1 and "study_9.nii.gz" in err


def test_thesis_recipe_needs_hu_and_no_jitter(mosmed, tmp_path):
    with pytest.raises(InputError, match="intensity_jitter: false"):
        _config(_data(mosmed, tmp_path, preset="mosmed", recipe="thesis"), intensity_jitter=True)
    data = _config(_data(mosmed, tmp_path, preset="mosmed", recipe="thesis")).data
    train_set = load_training_set(data)
    assert train_set.images.min() >= -1.0 and train_set.images.max() <= 1.0
    assert train_set.images.min() < -0.9  # air at -1000 HU -> -1


def test_training_runs_and_resumes_on_own_volumes(mosmed, tmp_path):
    data = _data(mosmed, tmp_path, preset="mosmed")
    train(_config(data), tmp_path / "full", progress=False)
    train(_config(data), tmp_path / "cut", progress=False, max_steps=2)
    assert not (tmp_path / "cut" / "model.pt").exists()
    train(_config(data), tmp_path / "cut", resume=True, progress=False)
    full, cut = (torch.load(tmp_path / r / "model.pt") for r in ("full", "cut"))
    for key in full:
        assert torch.allclose(full[key].float(), cut[key].float(), atol=1e-5), key
    log = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]


def test_evaluate_writes_per_case_figures(mosmed, tmp_path):
    import yaml

    from covseg.evaluate import evaluate_model
    from covseg.infer import LesionSegmenter

    cfg = _config(_data(mosmed, tmp_path, preset="mosmed"), epochs=1)
    train(cfg, tmp_path / "run", progress=False)
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    segmenter = LesionSegmenter(tmp_path / "run" / "model.pt", model="anamnet")
    result = evaluate_model(config=path, segmenter=segmenter, cases_path=tmp_path / "cases.csv")
    rows = result.per_case.rows()
    assert sorted(r["case"] for r in rows) == sorted(set(load_test_set(cfg.data).cases))
    assert all(r["slices"] == 20 and r["lung_source"] == "covseg.lungs:hu" for r in rows)
    summary = json.loads((tmp_path / "cases.json").read_text())
    assert summary["cases"] == 2 and summary["slices"] == 40
    assert (tmp_path / "cases.csv").read_text().splitlines()[0].startswith("case,patient,slices")


def test_early_stopping_keeps_the_best_epoch(mosmed, tmp_path):
    from covseg.train.callbacks import BEST

    data = _data(mosmed, tmp_path, preset="mosmed", split={"test": 1, "val": 1})
    with pytest.raises(InputError, match="split.val"):
        _config(dict(data, split={"test": 1}), patience=1)
    cfg = _config(data, patience=1, epochs=4)
    train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores, best = [r["val_dice_abnormal"] for r in log], log[-1]["best_epoch"]
    assert scores[best - 1] == max(scores) and 1 <= len(scores) <= 4
    assert len(scores) == 4 or len(scores) - best == 1  # stopped one epoch after the best
    assert (run / "model.pt").read_bytes() == (run / BEST).read_bytes()
    sides = {s for c, s in assign(discover(cfg.data)[0], cfg.data.split).items()}
    assert sides == {"train", "val", "test"}


def test_cut_cases_are_cached_and_refreshed_when_a_file_changes(tmp_path, monkeypatch):
    import os

    import covseg.io

    root = write_mosmed(tmp_path / "m", n=2)
    data = _config(_data(root, tmp_path, preset="mosmed")).data
    first = load_test_set(data)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2

    def no_reading(*_args, **_kw):
        raise AssertionError("a cached case was read again")

    monkeypatch.setattr(covseg.io, "read_scan", no_reading)
    again = load_test_set(data)
    assert np.array_equal(first.images, again.images) and first.case_info == again.case_info
    mask = root / "masks" / "study_0000_mask.nii.gz"
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read again"):
        load_training_set(data)


def test_cli_evaluate_prints_and_writes_per_case_figures(mosmed, tmp_path, cli):
    import yaml

    cfg = _config(_data(mosmed, tmp_path, preset="mosmed"), epochs=1)
    train(cfg, tmp_path / "run", progress=False)
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    code, out, _err = cli("evaluate", "--config", path, "--weights", tmp_path / "run" / "model.pt",
                          "--model", "anamnet", "--cases", tmp_path / "cases.csv")
    assert code == 0 and "3-D Dice, mean over cases" in out
    assert len((tmp_path / "cases.csv").read_text().splitlines()) == 3  # header + 2 test cases
    code, _out, err = cli("evaluate", "--config", path, "--folds", "2")
    assert code == 2 and "data.split" in err


def test_a_mask_stored_in_another_axis_order_is_read_onto_the_image(tmp_path):
    """The same voxels written with a flipped x axis (and the affine that says so) still pair."""
    import nibabel as nib

    root = tmp_path / "flipped"
    ph = phantoms(2)[0]
    for k in range(2):
        write_nifti(ph.hu, ph.spacing, root / "images" / f"c{k}.nii.gz")
    dz, dy, dx = ph.spacing
    nx = ph.hu.shape[2]
    affine = np.diag([dx, -dy, dz, 1.0])
    affine[0, 3] = -dx * (nx - 1)  # file x runs the other way: RAS x = -dx (nx - 1 - i)
    (root / "labels").mkdir()
    for k in range(2):
        flipped = np.transpose(ph.lesions, (2, 1, 0))[::-1].astype(np.uint8)
        image = nib.Nifti1Image(np.ascontiguousarray(flipped), affine)
        nib.save(image, str(root / "labels" / f"c{k}.nii.gz"))
    test = load_test_set(_config(_data(root, tmp_path)).data)
    assert np.array_equal(test.labels == ABNORMAL, ph.lesions)


def test_per_case_figures_need_own_volumes(tmp_path):
    from covseg.evaluate import evaluate_model

    with pytest.raises(InputError, match="per-case figures need"):
        evaluate_model(dataset="medseg100", cases_path=tmp_path / "cases.csv")
