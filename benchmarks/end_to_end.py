"""End-to-end accuracy as a user gets it: slices saved as pictures, fed to `covseg.segment`.

Nothing of covseg's evaluator is used: the pictures are written with Pillow, segmented through
the public API exactly as `covseg segment slice.png` would, and Dice is computed here with numpy.

    python benchmarks/end_to_end.py ma20 [--limit N] [--variant NAME ...] [--reference-lungs]
                                         [--own-intensity] [--fold K] [--lung-weights W ...]
                                         [--lungs METHOD]
    python benchmarks/end_to_end.py medseg [--variant stored upright ...]

--reference-lungs gives covseg the data set's lung mask (`covseg.segment(..., lung_mask=...)`,
the paper's protocol) instead of its own; --own-intensity tells covseg the picture is already
ma20-enhanced (a `Scan` with `Intensity.ENHANCED`), else it is a user's picture and is
enhanced again, as `covseg segment slice.png` does.

ma20 fold 4 (never trained on): reference lungs and infection masks from the data set. --fold 3
measures a lung model trained on folds 1-2, for choosing one without fold 4; its lesion figures
are not held out (the shipped lesion model learned fold 3).
medseg100 test: reference infection masks (no lung masks exist). Variants change the picture the
way users' pictures differ (turned, mirrored, cropped, scaled, re-windowed; ma20 also lung-masked,
on black or on the paper app's grey); the reference is
changed alongside and the prediction compared on the original grid where the change is invertible.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__import__("os").environ.get("COVSEG_DATA_ROOT", ROOT.parent / "shared" / "data"))


APP_GREY = 231  # the background grey of the Anam-Net app's lung-masked pictures (anamnet_samples)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = pred.sum() + ref.sum()
    return 1.0 if total == 0 else 2.0 * float((pred & ref).sum()) / float(total)


def _window(img: np.ndarray, lo: float, hi: float, gamma: float = 1.0) -> np.ndarray:
    out = np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1) ** gamma
    return np.rint(out * 255).astype(np.uint8)


def variant(name: str, image: np.ndarray, masks: list[np.ndarray]):
    """(picture, reference masks, undo) for one way users' pictures differ; undo maps a
    prediction on the picture back onto the original grid (None when the grid changed)."""
    same = lambda a: a  # noqa: E731
    if name in ("stored", "as-is"):
        return image, masks, same
    if name == "upright":  # medseg's pictures are stored a quarter turn off
        return np.rot90(image, -1), [np.rot90(m, -1) for m in masks], lambda a: np.rot90(a, 1)
    if name == "turned":
        return np.rot90(image, 1), [np.rot90(m, 1) for m in masks], lambda a: np.rot90(a, -1)
    if name == "mirrored":
        return image[:, ::-1], [m[:, ::-1] for m in masks], lambda a: a[:, ::-1]
    if name in ("masked", "masked-grey"):  # lung-masked as the paper feeds (zero outside the
        # lungs) or shows slices (its app: the lungs on a light grey); ma20 only (it has lungs)
        if len(masks) < 2:
            raise SystemExit(f"variant {name} needs the data set's lung masks (ma20)")
        grey = 0 if name == "masked" else APP_GREY
        return np.where(masks[0] > 0, image, grey).astype(np.uint8), masks, same
    if name == "rewindowed":
        lo, hi = np.percentile(image, [2, 98])
        return _window(image, lo, hi, 0.8), masks, same
    if name.startswith("gamma"):  # e.g. gamma0.7: another display curve
        return _window(image, 0, 255, float(name[5:])), masks, same
    if name == "noise":
        noisy = image + np.random.default_rng(0).normal(0, 8, image.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8), masks, same
    if name.startswith("scale"):  # e.g. scale0.6 / scale1.6: the picture resized
        f = float(name[5:])
        size = (max(16, round(image.shape[1] * f)), max(16, round(image.shape[0] * f)))
        pic = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        ref = [np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
               for m in masks]
        return pic, ref, None
    if name == "crop":  # the lung region only, as MedSeg's pictures are cut
        lungs = masks[0]
        ys, xs = np.nonzero(lungs) if lungs.any() else np.nonzero(np.ones_like(lungs))
        m = 8
        box = (slice(max(0, ys.min() - m), ys.max() + m + 1), slice(max(0, xs.min() - m), xs.max() + m + 1))
        return image[box], [mk[box] for mk in masks], None
    raise SystemExit(f"unknown variant {name}")


def run_pictures(cases, variants: list[str], reference_lungs: bool = False,
                 own_intensity: bool = False, weights: Path | None = None,
                 lung_method: str = "auto") -> dict:
    """cases: (id, image uint8, lungs or None, lesions) -> per-variant figures."""
    import covseg
    from covseg.intensity import Intensity

    seg = covseg.LesionSegmenter(weights)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in variants:
            rows, t0 = [], time.perf_counter()
            for cid, image, lungs, lesion in cases:
                ref_masks = [lesion] if lungs is None else [lungs, lesion]
                pic, refs, _undo = variant(name, image, ref_masks)
                path = Path(tmp) / f"{cid}.png"
                Image.fromarray(np.ascontiguousarray(pic)).save(path)
                try:
                    scan = covseg.read_scan(path)
                    if own_intensity:
                        scan.intensity = Intensity.ENHANCED
                    given = refs[0] if reference_lungs and lungs is not None else None
                    res = covseg.segment(scan, segmenter=seg, pictures=False, lung_mask=given,
                                         lungs=lung_method)
                    pred_lung, pred_les = res.labels[0] > 0, res.labels[0] == 1
                except covseg.errors.CovsegError:
                    pred_lung = pred_les = np.zeros(pic.shape, bool)
                ref_les = refs[-1] > 0
                row = {"id": cid, "abnormal_dice": dice(pred_les, ref_les),
                       "tp": int((pred_les & ref_les).sum()), "pred": int(pred_les.sum()),
                       "ref": int(ref_les.sum()), "lesion_in_lungs": int((ref_les & pred_lung).sum())}
                if lungs is not None:
                    ref_lung = refs[0] > 0
                    row["lung_dice"] = dice(pred_lung, ref_lung)
                    row.update(lung_tp=int((pred_lung & ref_lung).sum()), lung_pred=int(pred_lung.sum()),
                               lung_ref=int(ref_lung.sum()))
                rows.append(row)
            out[name] = summarise(rows, time.perf_counter() - t0)
            print(json.dumps({name: out[name]}), flush=True)
    return out


def summarise(rows: list[dict], seconds: float) -> dict:
    tp, pred, ref = (sum(r[k] for r in rows) for k in ("tp", "pred", "ref"))
    inside = sum(r["lesion_in_lungs"] for r in rows)
    s = {"slices": len(rows),
         "abnormal_dice_per_slice": round(float(np.mean([r["abnormal_dice"] for r in rows])), 4),
         "abnormal_dice_pooled": round(2 * tp / max(1, pred + ref), 4),
         "lesion_pixels_inside_lungs_pct": round(100 * inside / max(1, ref), 2),
         "seconds": round(seconds, 1)}
    if "lung_dice" in rows[0]:
        ltp, lp, lr = (sum(r[k] for r in rows) for k in ("lung_tp", "lung_pred", "lung_ref"))
        s["lung_dice_per_slice"] = round(float(np.mean([r["lung_dice"] for r in rows])), 4)
        s["lung_dice_pooled"] = round(2 * ltp / max(1, lp + lr), 4)
    return s


def ma20_cases(limit: int | None, fold: int = 4):
    import csv
    root = DATA / "ma20"
    idx = []
    with open(root / "blocks.csv", newline="") as fh:
        for b in csv.DictReader(fh):
            if int(b["fold"]) == fold:
                idx.extend(range(int(b["first_index"]), int(b["last_index"]) + 1))
    if limit:  # evenly spaced through the fold, so every block of it is represented
        idx = [idx[k] for k in np.linspace(0, len(idx) - 1, min(limit, len(idx))).astype(int)]
    def read(folder: str, i: int) -> np.ndarray:
        return np.asarray(Image.open(root / folder / f"{i:04d}.png"))

    for i in idx:
        lungs, inf = read("lungs", i) > 0, read("covid", i) > 0
        yield f"ma20_{i:04d}", read("ct", i), lungs, inf & lungs


def medseg_cases(limit: int | None, split: str = "test"):
    """split: test | train | held_out (the 10 training pictures the lung model never saw)."""
    root = DATA / "medseg100" / ("train" if split == "held_out" else split)
    names = sorted((root / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    if split == "held_out":
        from covseg.data.medseg import lung_model_split
        names = [names[i] for i in lung_model_split("held_out")]
    if limit:
        names = names[:limit]
    for p in names:
        image = np.asarray(Image.open(p).convert("L"))
        mask = np.asarray(Image.open(root / "masks" / f"{p.stem}.png")) > 0
        yield f"medseg_{p.stem}", image, None, mask


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=["ma20", "medseg"])
    ap.add_argument("--limit", type=int)
    ap.add_argument("--variant", nargs="+")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--reference-lungs", action="store_true", help="give covseg the reference lungs")
    ap.add_argument("--own-intensity", action="store_true", help="ma20's own enhancement, not again")
    ap.add_argument("--weights", type=Path, help="lesion weights (default: the shipped model)")
    ap.add_argument("--split", choices=["train", "held_out", "test"], default="test",
                    help="medseg100 split (train, held_out: for choosing, never the test figures)")
    ap.add_argument("--lung-weights", type=Path, nargs="+",
                    help="a candidate lung model (several: their mean) instead of the shipped")
    ap.add_argument("--lung-threshold", type=float, help="a candidate lung threshold (default: shipped)")
    ap.add_argument("--fold", type=int, default=4, choices=[1, 2, 3, 4], help="ma20 fold (default 4)")
    ap.add_argument("--lungs", default="auto", help="covseg's lung method (default auto)")
    args = ap.parse_args(argv)
    import covseg.lungs.learned as learned
    if args.lung_weights:  # a candidate lung model, for choosing one: swapped in for this run
        candidate = learned.LungModel(args.lung_weights)  # loaded here: a bad file stops the run
        learned.LungModel.shared = classmethod(lambda cls: candidate)
    if args.lung_threshold is not None:  # a candidate threshold, for choosing one
        learned.LungModel.shared().threshold = args.lung_threshold
    if args.dataset == "ma20":
        cases = list(ma20_cases(args.limit, args.fold))
        variants = args.variant or ["as-is"]
    else:
        cases = list(medseg_cases(args.limit, args.split))
        variants = args.variant or ["stored", "upright"]
    result = run_pictures(cases, variants, args.reference_lungs, args.own_intensity, args.weights,
                          args.lungs)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
