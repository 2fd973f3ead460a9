"""How much lung a lesion model calls abnormal where there is no disease (issue 16; the CT-0 rule).

    python benchmarks/lesion_free.py [--weights W ...]

Each input goes through `covseg.segment` as a user's file would. Known lesion-free: the healthy
phantom (seeds 0-2) and the Anam-Net paper's slice 292 (its Table VI: no lesion), as its JPEG and
as `sampledata.mat` im3 saved as a PNG. Also printed, for what is not known to be lesion-free:
real_ct (lung bases that look aerated) and the two DICOM slices.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

import covseg

DATA = Path(os.environ.get("COVSEG_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def inputs(tmp: Path) -> list[tuple[str, object]]:
    from scipy.io import loadmat

    from covseg.demo import save_phantom

    healthy = []
    for seed in (0, 1, 2):
        path = tmp / f"healthy_{seed}.nii.gz"
        save_phantom(covseg.make_phantom(with_lesions=False, seed=seed), path)
        healthy.append((f"phantom seed {seed} (healthy)", path))
    im3 = tmp / "slice_292_im3.png"
    Image.fromarray(loadmat(DATA / "anamnet_samples" / "sampledata.mat")["im3"]).save(im3)
    return [*healthy,
            ("slice 292 JPEG (lesion-free)", DATA / "anamnet_samples" / "slice_292.jpeg"),
            ("slice 292 im3 PNG (lesion-free)", im3),
            ("real_ct (unknown)", DATA / "real_ct" / "example_ct.nii.gz"),
            ("DICOM slice 0 (unknown)", DATA / "real_ct" / "dicom_slices" / "0.dcm"),
            ("DICOM slice 1 (unknown)", DATA / "real_ct" / "dicom_slices" / "1.dcm")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", type=Path, default=[None],
                    help="lesion weights to compare (default: the shipped model)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cases = inputs(Path(tmp))
        for weights in args.weights:
            segmenter = covseg.LesionSegmenter(weights)
            for name, source in cases:
                result = covseg.segment(source, segmenter=segmenter, pictures=False)
                q = result.quantification
                print(json.dumps({"weights": str(weights or "shipped"), "input": name,
                                  "abnormal_pixels": int((result.labels == 1).sum()),
                                  "lesion_ml": q.lesion_ml,
                                  "involvement_pct": round(q.involvement_percent, 3),
                                  "grade": q.severity.grade}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
