"""Lesion calls in a ring grown around covseg's picture lungs (issues 15 and 24, docs/results.md).

    python benchmarks/lung_edge_ring.py [--weights W] [--fold K] [--limit N] [--px P]

Each ma20 slice of fold K is saved as a PNG and given to `covseg.segment` twice: as it is (covseg's
lungs L and lesions), then with L grown by P pixels as the user's lung mask. What the second run
calls abnormal in the ring (grown minus L) is counted against the reference lesions there, and
the first run's figures are given with and without those calls added to lesions and lungs. The
weights' metadata decides the post-processing (`against_outside` for models trained with
`loose_lungs`). Dice is computed here.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from end_to_end import dice, ma20_cases  # noqa: E402

import covseg  # noqa: E402


def _row(lesions: np.ndarray, lungs: np.ndarray, ref_lesion: np.ndarray, ref_lungs: np.ndarray) -> dict:
    return dict(d=dice(lesions, ref_lesion), tp=int((lesions & ref_lesion).sum()),
                pred=int(lesions.sum()), ref=int(ref_lesion.sum()), inside=int((ref_lesion & lungs).sum()),
                ltp=int((lungs & ref_lungs).sum()), lp=int(lungs.sum()), lr=int(ref_lungs.sum()))


def _summary(rows: list[dict]) -> dict:
    total = {k: sum(r[k] for r in rows) for k in ("tp", "pred", "ref", "inside", "ltp", "lp", "lr")}
    return dict(per_slice=round(float(np.mean([r["d"] for r in rows])), 4),
                pooled=round(2 * total["tp"] / max(1, total["pred"] + total["ref"]), 4),
                inside_pct=round(100 * total["inside"] / max(1, total["ref"]), 2),
                lung_dice_pooled=round(2 * total["ltp"] / max(1, total["lp"] + total["lr"]), 4))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, help="lesion weights (default: the shipped model)")
    ap.add_argument("--fold", type=int, default=3, choices=[1, 2, 3, 4])
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--px", type=int, default=8, help="ring width in picture pixels")
    args = ap.parse_args(argv)
    seg = covseg.LesionSegmenter(args.weights, backend="torch", precision="fp32")
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * args.px + 1, 2 * args.px + 1))
    ring_total = dict(ring=0, called=0, reference=0, called_reference=0)
    without, with_ring = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for cid, image, ref_lungs, ref_lesion in ma20_cases(args.limit, args.fold):
            path = Path(tmp) / f"{cid}.png"
            Image.fromarray(image).save(path)
            first = covseg.segment(covseg.read_scan(path), segmenter=seg, pictures=False)
            lungs, lesions = first.labels[0] > 0, first.labels[0] == 1
            grown = cv2.dilate(lungs.astype(np.uint8), disk) > 0
            ring = grown & ~lungs
            second = covseg.segment(covseg.read_scan(path), segmenter=seg, pictures=False,
                                    lung_mask=grown)
            called = (second.labels[0] == 1) & ring
            for key, value in (("ring", ring), ("called", called), ("reference", ref_lesion & ring),
                               ("called_reference", called & ref_lesion)):
                ring_total[key] += int(value.sum())
            without.append(_row(lesions, lungs, ref_lesion, ref_lungs))
            with_ring.append(_row(lesions | called, lungs | called, ref_lesion, ref_lungs))
    print(json.dumps(dict(weights=str(args.weights or "shipped"), fold=args.fold, slices=len(without),
                          px=args.px, ring=ring_total, without_ring=_summary(without),
                          with_ring=_summary(with_ring))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
