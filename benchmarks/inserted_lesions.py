"""Synthetic lesions of known volume in real_ct, through `covseg.segment` (issue 24, item 2).

    python benchmarks/inserted_lesions.py [--weights W] [--lungs-given]

Each row is one copy of real_ct/example_ct.nii.gz with one insertion (covseg.demo.insert),
written as NIfTI and segmented as a user's file would be. Found, lung and "changed elsewhere"
are computed here from the label maps, against the scan without insertions. `--lungs-given`
hands covseg the lungs of the scan without insertions (which hold every insertion) as the user's
lung mask: what the lesion model finds when the lung mask is not the limit.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

import covseg
from covseg.demo.insert import insert, insertion_region
from covseg.infer import LesionSegmenter
from covseg.lungs import extract_lungs_hu

DATA = Path(os.environ.get("COVSEG_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
CASES = [("deep", "round", r, hu) for r in (8, 12) for hu in (-450, -20)] \
    + [("deep", "patchy", 12, -450)] \
    + [("pleura", "round", r, hu) for r in (8, 12, 18) for hu in (-450, -20)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, help="lesion weights (default: the shipped model)")
    ap.add_argument("--lungs-given", action="store_true",
                    help="give the lungs of the scan without insertions as the lung mask")
    args = ap.parse_args(argv)
    src = DATA / "real_ct" / "example_ct.nii.gz"
    scan, affine = covseg.read_scan(src), nib.load(src).affine
    labels = extract_lungs_hu(scan.array, scan.spacing)
    lungs = labels > 0
    given = labels if args.lungs_given else None
    segmenter = LesionSegmenter(args.weights)
    base = covseg.segment(scan, segmenter=segmenter, pictures=False)
    v = scan.voxel_volume_ml
    print("| where | shape | radius | HU | inserted mL | inside the lung mask | found as lesion "
          "| found / inserted | lung mL (without: %.1f) | lesion changed elsewhere |"
          % base.quantification.lung_ml)
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for inside_scan in (False, True):
            for where, shape, radius, hu_value in CASES:
                if where == "deep" and inside_scan:
                    continue
                region = insertion_region(lungs, scan.spacing, where, shape, radius, inside_scan)
                path = Path(tmp) / "inserted.nii.gz"
                data = np.transpose(insert(scan.array, region, hu_value), (2, 1, 0))[::-1, ::-1, :]
                nib.save(nib.Nifti1Image(data.astype(np.int16), affine), path)
                r = covseg.segment(path, segmenter=segmenter, pictures=False, lung_mask=given)
                truth = region.sum() * v
                in_lungs = ((r.labels > 0) & region).sum() * v
                found = ((r.labels == 1) & region).sum() * v
                outside = ~ndi.binary_dilation(region, iterations=2)
                changed = (((r.labels == 1) != (base.labels == 1)) & outside).sum() * v
                site = where + (" (away from the scan's end)" if inside_scan else "")
                print(f"| {site} | {shape} | {radius} mm | {hu_value} | {truth:.2f} | "
                      f"{in_lungs:.2f} | {found:.2f} | {found / truth:.0%} | "
                      f"{r.quantification.lung_ml:.1f} | {changed:.2f} mL |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
