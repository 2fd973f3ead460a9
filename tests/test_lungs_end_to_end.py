"""Floors on the picture path end to end, real data: ma20 fold 4 slices saved as PNGs and given to
`covseg.segment` as a user would (docs/results.md, "Lungs"; full figures by benchmarks/end_to_end.py).

16 slices evenly spaced through fold 4 (never trained on). Measured with the shipped models on
them (2026-12-02, the lung model with MedSeg's training pictures, its mean over four quarter
turns and its closer look at the lungs' box, the lesion model's mean over four flips): lung Dice
0.9656, reference lesion pixels inside 98.00 % (92.67 % before the closer look), abnormal Dice
0.623 upright, 0.616 turned a quarter (on all 381 slices the two differ by 0.002; 16 slices are
noisier, hence 0.05 here); the floors sit a little under the measured values, so only a real
loss trips them.
"""
from __future__ import annotations

import csv

import numpy as np
from PIL import Image

import covseg

# lesion pixels inside %, abnormal Dice per slice (measured 96.65, 0.539; 0.540 before the zoom vote)
MEDSEG_FLOORS = (95.0, 0.50)


def _fold4(root, count=16):
    idx = []
    with open(root / "blocks.csv", newline="") as fh:
        for b in csv.DictReader(fh):
            if int(b["fold"]) == 4:
                idx.extend(range(int(b["first_index"]), int(b["last_index"]) + 1))
    return [idx[k] for k in np.linspace(0, len(idx) - 1, count).astype(int)]


def test_ma20_pictures_keep_their_lungs_and_lesions(data_dir, tmp_path):
    root = data_dir / "ma20"
    seg = covseg.LesionSegmenter()
    tp = pred_lung = ref_lung = inside = ref_les = 0
    dice = {0: [], 1: []}
    for i in _fold4(root):
        name = f"{i:04d}.png"
        lungs = np.asarray(Image.open(root / "lungs" / name)) > 0
        lesion = (np.asarray(Image.open(root / "covid" / name)) > 0) & lungs
        for k in (0, 1):
            path = tmp_path / f"{k}_{name}"
            Image.fromarray(np.rot90(np.asarray(Image.open(root / "ct" / name)), k)).save(path)
            labels = np.rot90(covseg.segment(path, segmenter=seg, pictures=False).labels[0], -k)
            if k == 0:
                found = labels > 0
                tp += int((found & lungs).sum())
                pred_lung += int(found.sum())
                ref_lung += int(lungs.sum())
                inside += int((found & lesion).sum())
                ref_les += int(lesion.sum())
            called = labels == 1
            total = called.sum() + lesion.sum()
            dice[k].append(1.0 if total == 0 else 2 * float((called & lesion).sum()) / float(total))
    lung_dice = 2 * tp / (pred_lung + ref_lung)
    inside_pct = 100 * inside / ref_les
    assert lung_dice >= 0.95, lung_dice
    assert inside_pct >= 97.0, inside_pct
    upright, turned = float(np.mean(dice[0])), float(np.mean(dice[1]))
    assert upright >= 0.62, upright  # measured 0.660 (0.623 before pictures kept their contrast)
    print(f"lung Dice {lung_dice:.4f}, lesion inside {inside_pct:.2f} %, abnormal Dice upright "
          f"{upright:.4f}, turned {turned:.4f}")
    assert abs(upright - turned) < 0.05, (upright, turned)  # a quarter turn changes little


def test_medseg_pictures_keep_their_lesions_inside_the_lungs(data_dir, tmp_path):
    """8 medseg100 test pictures (evenly spaced), upright, given as a user gives a lung-window
    crop: no pixel size. Measured (2026-12-01, the lung model trained with MedSeg's training
    pictures, never its test split): see MEDSEG_FLOORS; the floors sit a little under it (the
    ma20-only lung model kept 86.8 % of the 48 pictures' lesion pixels inside its lungs)."""
    root = data_dir / "medseg100" / "test"
    names = sorted((root / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    seg = covseg.LesionSegmenter()
    inside = ref = 0
    dices = []
    for k in np.linspace(0, len(names) - 1, 8).astype(int):
        picture = np.rot90(np.asarray(Image.open(names[k]).convert("L")), -1)
        lesion = np.rot90(np.asarray(Image.open(root / "masks" / f"{names[k].stem}.png")), -1) > 0
        path = tmp_path / f"{names[k].stem}.png"
        Image.fromarray(np.ascontiguousarray(picture)).save(path)
        labels = covseg.segment(path, segmenter=seg, pictures=False).labels[0]
        inside += int((lesion & (labels > 0)).sum())
        ref += int(lesion.sum())
        called = labels == 1
        dices.append(2 * float((called & lesion).sum()) / float(called.sum() + lesion.sum()))
    inside_pct, per_slice = 100 * inside / ref, float(np.mean(dices))
    print(f"MedSeg: lesion inside {inside_pct:.2f} %, abnormal Dice per slice {per_slice:.4f}")
    assert inside_pct >= MEDSEG_FLOORS[0], inside_pct
    assert per_slice >= MEDSEG_FLOORS[1], per_slice
