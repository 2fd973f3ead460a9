"""Which pictures covseg takes for lung-masked (covseg.lungs.masked), as a user's files.

    python benchmarks/masked_detection.py [--step K]

Each picture is saved as a PNG (the paper's JPEGs as they are), read with `covseg.read_scan` and
given to `covseg.lungs.resolve_method("auto", ...)`, the decision `covseg segment` makes. Lung-masked
inputs: the Anam-Net paper's four slices (its app's JPEGs and sampledata.mat) and every K-th ma20
slice multiplied by its lung mask, on black and on the app's grey. Whole pictures, which must never
be taken for masked: the same ma20 slices as stored, all of MedSeg's pictures, real_ct's slices in
lung, mediastinal and bone windows (also padded into a wide black field: a small patient in a
large field of view, where the air outside covers most of the picture) and the two DICOM slices.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from scipy.io import loadmat

import covseg
from covseg.lungs import resolve_method

sys.path.insert(0, str(Path(__file__).resolve().parent))
from end_to_end import APP_GREY, _window  # noqa: E402  (a display window, as a user's viewer draws it)

DATA = Path(os.environ.get("COVSEG_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
WINDOWS = {"lung": (-1350, 150), "mediastinal": (-125, 225), "bone": (-450, 1050)}


def decide(item, tmp: Path) -> str:
    if isinstance(item, np.ndarray):
        path = tmp / "picture.png"
        Image.fromarray(item).save(path)
        item = path
    scan = covseg.read_scan(item)
    return resolve_method("auto", scan.intensity, scan.array)


def groups(step: int):
    """(name, lung-masked?, pictures)"""
    paper = DATA / "anamnet_samples"
    mat = loadmat(paper / "sampledata.mat")
    yield "paper's slices, app JPEGs", True, sorted(paper.glob("*.jpeg"))
    yield "paper's slices, sampledata.mat", True, [mat[k] for k in ("im1", "im2", "im3", "im4")]
    ma20 = sorted((DATA / "ma20" / "ct").glob("*.png"))[::step]
    pairs = [(np.asarray(Image.open(p)), np.asarray(Image.open(p.parent.parent / "lungs" / p.name)) > 0)
             for p in ma20]
    yield "ma20 masked on black", True, [np.where(lungs, ct, 0).astype(np.uint8) for ct, lungs in pairs]
    yield (f"ma20 masked on grey {APP_GREY}", True,
           [np.where(lungs, ct, APP_GREY).astype(np.uint8) for ct, lungs in pairs])
    yield "ma20 as stored", False, [ct for ct, _ in pairs]
    yield "medseg100 pictures", False, sorted((DATA / "medseg100").glob("*/images/*.jpg"))
    ct = nib.load(DATA / "real_ct" / "example_ct.nii.gz").get_fdata()
    planes = [ct[:, :, z].T[::-1] for z in range(0, ct.shape[2], 2)]
    for name, (lo, hi) in WINDOWS.items():
        yield f"real_ct, {name} window", False, [_window(p, lo, hi) for p in planes]
        yield f"real_ct, {name} window, wide field", False, [np.pad(_window(p, lo, hi), 300) for p in planes]
    dicom = []
    for f in sorted((DATA / "real_ct" / "dicom_slices").glob("*.dcm")):
        d = pydicom.dcmread(f)
        hu = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
        dicom += [_window(hu, lo, hi) for lo, hi in WINDOWS.values()]
        dicom += [np.pad(_window(hu, lo, hi), 300) for lo, hi in WINDOWS.values()]
    yield "DICOM slices, 3 windows, as they are and in a wide field", False, dicom


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, default=8, help="every K-th ma20 slice (default 8)")
    args = ap.parse_args(argv)
    print("| pictures | lung-masked | taken for masked |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, masked, items in groups(args.step):
            hits = sum(decide(item, Path(tmp)) == "masked" for item in items)
            print(f"| {name} | {'yes' if masked else 'no'} | {hits} of {len(items)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
