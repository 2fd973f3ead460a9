"""Choosing how the lung model looks at a picture, variants measured on ma20 pictures.

Each slice is written as a PNG and read back with covseg.read_scan, as a user's picture; the
lung model's probabilities are computed per variant and turned into lungs by
`covseg.lungs.learned.lung_sides`, as `LungModel.apply` does; Dice and lesion pixels inside
are computed here.

    python benchmarks/lung_views.py WEIGHTS --fold 3 --limit 103 [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from end_to_end import ma20_cases, medseg_cases  # noqa: E402

import covseg  # noqa: E402
import covseg.lungs.learned as learned  # noqa: E402
from covseg.labels import LEFT, RIGHT  # noqa: E402
from covseg.lungs.box import mask_box  # noqa: E402
from covseg.lungs.threshold import largest_components, split_left_right  # noqa: E402


def per_lung_look(model: learned.LungModel, stack, intensity, prob):
    """Each lung's own square box (grown by the margin), looked at alone; max into prob."""
    out = prob.copy()
    h, w = stack.shape[1:]
    for z in range(len(stack)):
        lungs = largest_components(prob[z][None] > learned.LUNG_THRESHOLD, keep_ratio=0.05)
        if not lungs.any():
            continue
        split = split_left_right(lungs)
        for label in (RIGHT, LEFT):
            box = mask_box(split == label)
            if box is None:
                continue
            ys, xs = learned._square(box[1:], (h, w))
            crop = np.ascontiguousarray(stack[z:z + 1, ys, xs])
            look = np.mean([model._look(crop, intensity, net) for net in model.nets], axis=0)
            np.maximum(out[z:z + 1, ys, xs], look, out=out[z:z + 1, ys, xs])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", type=Path, nargs="+", help="a lung model (several: their mean)")
    ap.add_argument("--dataset", default="ma20", choices=["ma20", "medseg"])
    ap.add_argument("--split", default="held_out")
    ap.add_argument("--fold", type=int, default=3)
    ap.add_argument("--limit", type=int, default=103)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.45, 0.4, 0.35, 0.3])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = learned.LungModel(args.weights)
    cases = (ma20_cases(args.limit, args.fold) if args.dataset == "ma20"
             else ((cid, np.rot90(img, -1), None, np.rot90(les, -1))
                   for cid, img, _, les in medseg_cases(None, args.split)))
    names = [f"{v}@{t}" for v in ("shipped", "per_lung") for t in args.thresholds]
    acc = {n: dict(tp=0, pred=0, ref=0, inside=0, les=0, dices=[]) for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for cid, image, ref_lung, ref_les in cases:
            path = Path(tmp) / f"{cid}.png"
            Image.fromarray(np.ascontiguousarray(image)).save(path)
            scan = covseg.read_scan(path)
            stack = scan.array
            prob = model.probabilities(stack, scan.intensity)
            probs = {"shipped": prob, "per_lung": per_lung_look(model, stack, scan.intensity, prob)}
            for v, p in probs.items():
                for t in args.thresholds:
                    lungs = learned.lung_sides(p, t)[0] > 0
                    a = acc[f"{v}@{t}"]
                    a["inside"] += int((lungs & ref_les).sum())
                    a["les"] += int(ref_les.sum())
                    if ref_lung is not None:
                        tp = int((lungs & ref_lung).sum())
                        a["tp"] += tp
                        a["pred"] += int(lungs.sum())
                        a["ref"] += int(ref_lung.sum())
                        a["dices"].append(2 * tp / max(1, lungs.sum() + ref_lung.sum()))
    result = {}
    for n, a in acc.items():
        result[n] = {"inside_pct": round(100 * a["inside"] / max(1, a["les"]), 2)}
        if a["dices"]:
            result[n].update(lung_dice_pooled=round(2 * a["tp"] / (a["pred"] + a["ref"]), 4),
                             lung_dice_per_slice=round(float(np.mean(a["dices"])), 4))
        print(n, result[n], flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
