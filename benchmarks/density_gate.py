"""Before/after table of the density gate on HU inputs, through `covseg.segment`.

    python benchmarks/density_gate.py [SCAN ...]   (default: real_ct's CT and DICOM slices, the phantom)

"before" replaces the gate with a no-op for that run; "after" is covseg as shipped. The HU
statistics are computed here from the scan and the label map, not by covseg.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import covseg
import covseg.pipeline as pipeline
from covseg.demo import save_phantom
from covseg.infer import LesionSegmenter
from covseg.infer.density import DensityGate, gate_by_density

DATA = Path(os.environ.get("COVSEG_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def row(path: Path, segmenter: LesionSegmenter, gated: bool) -> str:
    pipeline.gate_by_density = gate_by_density if gated else (lambda *_: DensityGate(0, 0, 0, 0))
    r = covseg.segment(path, segmenter=segmenter, pictures=False)
    hu, labels = r.scan.array, r.labels
    abnormal, normal = hu[labels == 1], hu[labels == 2]
    gap = float(np.median(abnormal) - np.median(normal)) if abnormal.size else float("nan")
    aerated = 100 * float(np.mean(abnormal < -700)) if abnormal.size else 0.0
    q = r.quantification
    return (f"| {path.name} | {'after' if gated else 'before'} | {q.lesion_ml:.2f} | {gap:.0f} | "
            f"{aerated:.1f} % | {q.involvement_percent:.2f} % | {q.severity.grade} |")


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(a) for a in argv] or [DATA / "real_ct" / "example_ct.nii.gz",
                                            DATA / "real_ct" / "dicom_slices",
                                            save_phantom(covseg.make_phantom(), Path(tmp) / "phantom.nii.gz")]
        segmenter = LesionSegmenter()
        print("| input | gate | lesion mL | median HU abnormal - normal | abnormal below -700 HU "
              "| involvement | grade |")
        for path in paths:
            for gated in (False, True):
                print(row(path, segmenter, gated), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
