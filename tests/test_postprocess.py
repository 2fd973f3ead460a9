"""Post-processing: the margin and smallest-lesion rule, and the tuner's fast search agreeing with it."""
import json

import numpy as np
import torch
from scipy import ndimage

from covseg.metrics import Evaluation
from covseg.evaluate.tune import MARGINS, MIN_LESION_PX, grid_search
from covseg.infer.postprocess import PostProcess, drop_small_islands
from covseg.infer.predictor import LesionSegmenter
from covseg.models import build_model


def test_small_islands_are_judged_slice_by_slice():
    mask = np.zeros((3, 20, 20), bool)
    mask[:, 2, 2] = True  # one pixel on each of three slices: a 3-voxel column, yet 1 px a slice
    mask[1, 10:14, 10:14] = True  # 16 px, diagonal neighbour joins in-plane (8-connectivity)
    mask[1, 14, 14] = True
    kept = drop_small_islands(mask, 5)
    assert not kept[:, 2, 2].any()
    assert kept[1].sum() == 17 and kept.sum() == 17


def test_labels_follow_margin_and_stay_inside_the_lungs():
    margins = np.array([[[-1.0, 0.5, 2.0, -np.inf]]], dtype=np.float32)
    lungs = np.isfinite(margins)
    np.testing.assert_array_equal(PostProcess().labels(margins, lungs), [[[2, 1, 1, 0]]])
    np.testing.assert_array_equal(PostProcess(margin=1.0).labels(margins, lungs), [[[2, 2, 1, 0]]])


def _evidence(seed=0):
    """Smooth random margins with lung borders and a truth that partly agrees with them."""
    rng = np.random.default_rng(seed)
    margins = ndimage.gaussian_filter(rng.normal(size=(6, 40, 40)), (0, 2, 2)) * 8
    truth = ndimage.gaussian_filter(rng.normal(size=margins.shape), (0, 2, 2)) * 8 + margins > 1.0
    margins[:, :, :4] = -np.inf  # outside the lungs
    truth[:, :, :4] = False
    truth[5] = False  # a slice without lesions: Dice 1 only if nothing is called abnormal
    return margins.astype(np.float16), truth


def test_grid_search_scores_what_postprocess_labels_would_score():
    margins, truth = _evidence()
    lungs = np.isfinite(margins)
    reference = np.where(lungs, 2, 0) - truth  # 0 outside, 1 abnormal, 2 normal
    found = grid_search(margins, truth)
    assert len(found) == len(MARGINS) * len(MIN_LESION_PX)
    assert len({round(c.per_slice_dice, 6) for c in found}) > len(MARGINS)  # sizes matter too
    for cand in found:
        ev = Evaluation({1: "abnormal"})
        for pred, ref in zip(cand.postprocess.labels(margins, lungs), reference):
            ev.add("s", pred, ref)
        assert np.isclose(ev.mean_per_slice()["abnormal"]["dice"], cand.per_slice_dice)
        assert np.isclose(ev.pooled()["abnormal"]["dice"], cand.pooled_dice)


def test_segmenter_applies_the_postprocessing_its_weights_carry(tmp_path):
    torch.manual_seed(0)
    torch.save(build_model("anamnet", num_classes=3).eval().state_dict(), tmp_path / "w.pt")
    images = np.random.default_rng(1).random((2, 32, 48)).astype(np.float32)
    lungs = np.ones(images.shape, bool)
    plain = LesionSegmenter(tmp_path / "w.pt", model="anamnet", backend="torch")
    margins = plain.margins(images, lungs)
    rule = PostProcess(margin=float(np.median(margins)), min_lesion_px=20)
    (tmp_path / "w.json").write_text(json.dumps({"model": "anamnet", "postprocess": rule.as_dict()}))
    tuned = LesionSegmenter(tmp_path / "w.pt", backend="torch")
    assert tuned.postprocess == rule
    np.testing.assert_array_equal(tuned.predict(images, lungs), rule.labels(margins, lungs))
    np.testing.assert_array_equal(plain.predict(images, lungs), PostProcess().labels(margins, lungs))


def test_tune_command_ranks_on_held_out_slices_and_keeps_existing_files(data_dir, tmp_path, cli):
    torch.manual_seed(0)
    (tmp_path / "runs" / "fold1").mkdir(parents=True)
    torch.save(build_model("anamnet", num_classes=3).state_dict(), tmp_path / "runs" / "fold1" / "model.pt")
    cfg = tmp_path / "fold1.yaml"
    cfg.write_text("name: fold1\nmodel: anamnet\n"
                   "data: {dataset: ma20, train_folds: [2], test_folds: [1], max_slices: 3}\n")
    out = tmp_path / "tuned.json"
    code, text, _ = cli("tune", cfg, "--runs", tmp_path / "runs", "--top", "3", "-o", out)
    assert code == 0, text
    assert "(untuned)" in text
    record = json.loads(out.read_text())
    assert set(record["postprocess"]) == {"margin", "min_lesion_px"}
    assert record["abnormal_dice"]["per_slice"] >= record["untuned_abnormal_dice"]["per_slice"]
    code, _, err = cli("tune", cfg, "--runs", tmp_path / "runs", "-o", out)
    assert code == 2 and "--force" in err
    assert json.loads(out.read_text()) == record
