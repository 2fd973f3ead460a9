"""Lesion volume from every backend on the same inputs (issue 16: within 3 % of each other).

    python benchmarks/backends.py [--weights W.pt] [SCAN ...]   (default: real_ct and the demo phantom)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import covseg
from covseg.demo import save_phantom
from covseg.infer import LesionSegmenter

DATA = Path(os.environ.get("COVSEG_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
RUNS = [("onnx-int8", "auto"), ("onnx", "auto"), ("torch", "fp32"), ("torch", "bf16")]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scans", nargs="*", type=Path)
    ap.add_argument("--weights", type=Path, help="weights (default: the shipped model, whose int8 "
                    "twin is the only int8 model)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scans = args.scans or [DATA / "real_ct" / "example_ct.nii.gz",
                               save_phantom(covseg.make_phantom(), Path(tmp) / "phantom.nii.gz")]
        print("| input | backend | precision | lesion mL | vs fp32 |")
        for scan in scans:
            volumes = {}
            for backend, precision in RUNS:
                if backend == "onnx-int8" and args.weights:
                    continue
                seg = LesionSegmenter(args.weights, backend=backend, precision=precision)
                q = covseg.segment(scan, segmenter=seg, pictures=False).quantification
                volumes[(backend, seg.precision)] = q.lesion_ml
            ref = volumes[("torch", "fp32")]
            for (backend, precision), ml in volumes.items():
                change = 100 * (ml - ref) / ref if ref else 0.0
                print(f"| {scan.name} | {backend} | {precision} | {ml:.2f} | {change:+.1f} % |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
