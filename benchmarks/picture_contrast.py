"""Which pictures covseg enhances again (`covseg.preprocess.contract.picture_clahe`), and how far
each view's lungs are from the look the lesion model learned.

For every picture the lungs' 10th-90th percentiles are taken in both views (min-max alone, and
min-max + CLAHE as ma20's repacker made it) and compared with ma20's (`MA20_LUNG_LOOK`); the
nearer view is fed. Lungs here are the data sets' own (MedSeg: its pseudo lungs), so the table
shows the rule itself, not the lung model.

    python benchmarks/picture_contrast.py          # also prints MA20_LUNG_LOOK measured again
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image

from covseg.data.medseg import pseudo_lungs
from covseg.demo.phantom import make_phantom
from covseg.intensity import Intensity
from covseg.preprocess.contract import LUNG_PERCENTILES, MA20_LUNG_LOOK, enhance, picture_clahe

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COVSEG_DATA_ROOT", ROOT.parent / "shared" / "data"))
WINDOWS = {"lung window (W1500 L-600)": (-1350.0, 150.0), "narrow lung window (-1000..0)": (-1000.0, 0.0),
           "wide window (-1024..2000)": (-1024.0, 2000.0)}


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def ma20(folds: set[int], every: int):
    rows = list(csv.DictReader(open(DATA / "ma20" / "blocks.csv")))
    idx = [i for r in rows if int(r["fold"]) in folds
           for i in range(int(r["first_index"]), int(r["last_index"]) + 1)][::every]
    for i in idx:
        name = f"{i:04d}.png"
        yield _gray(DATA / "ma20" / "ct" / name), _gray(DATA / "ma20" / "lungs" / name) > 0


def medseg(split: str):
    for path in sorted((DATA / "medseg100" / split / "images").glob("*.jpg")):
        image = _gray(path)
        lesion = np.asarray(Image.open(DATA / "medseg100" / split / "masks" / f"{path.stem}.png")) > 0
        yield image, pseudo_lungs(image, lesion)


def phantom(window: tuple[float, float]):
    ph = make_phantom()
    lo, hi = window
    for z in range(8, ph.hu.shape[0] - 8, 4):
        yield np.rint(np.clip((ph.hu[z] - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8), ph.lungs[z] > 0


def distance(view: np.ndarray, lungs: np.ndarray) -> float:
    return float(np.abs(np.percentile(view[lungs], LUNG_PERCENTILES) - np.asarray(MA20_LUNG_LOOK)).mean())


def row(name: str, pictures) -> None:
    plain, clahe, again = [], [], []
    for image, lungs in pictures:
        plain.append(distance(enhance(image, Intensity.DISPLAY, clahe=False), lungs))
        clahe.append(distance(enhance(image, Intensity.DISPLAY), lungs))
        again.append(picture_clahe(image, lungs))
    print(f"| {name} | {len(again)} | {np.mean(plain):.3f} | {np.mean(clahe):.3f} | "
          f"{100 * np.mean(again):.0f} % |")


def main() -> None:
    look = np.median([np.percentile(im[lu] / 255.0, LUNG_PERCENTILES) for im, lu in ma20({1, 2, 3}, 10)], 0)
    print("ma20 folds 1-3, every 10th slice, lungs' percentiles:", np.round(look, 3),
          "(shipped MA20_LUNG_LOOK:", MA20_LUNG_LOOK, ")")
    print("| pictures | n | distance, min-max alone | distance, with CLAHE | given CLAHE |")
    print("| --- | --- | --- | --- | --- |")
    row("ma20 fold 3 PNGs (every 4th)", ma20({3}, 4))
    row("ma20 fold 4 PNGs (every 4th)", ma20({4}, 4))
    row("medseg100 training pictures", medseg("train"))
    row("medseg100 test pictures", medseg("test"))
    for name, window in WINDOWS.items():
        row(f"demo phantom, {name}", phantom(window))


if __name__ == "__main__":
    main()
