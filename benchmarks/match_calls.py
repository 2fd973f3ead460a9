"""The decision margin at which a fine-tuned lesion model calls as much of ma20's lungs abnormal
as the model it started from (docs/results.md, "The shipped model fine-tuned with MedSeg").

    python benchmarks/match_calls.py START.pt TUNED.pt --folds 1 2 3 [--json out.json]

Fine-tuning on other pictures (MedSeg's) moved how eagerly the model calls ma20's disease; the
margin undoes that shift on the slices both models trained on (reference lungs, PyTorch fp32,
pooled over lung pixels), so it needs no held-out or test slice. Prints the start's calls and
sensitivity, the tuned model's at several margins, and the matching margin (0.05 steps), which
`covseg ship --margin` records in the weights' metadata.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from covseg.data.datasets import load_test_set, model_inputs
from covseg.infer.predictor import LesionSegmenter
from covseg.labels import ABNORMAL
from covseg.train.config import DataConfig

GRID = np.round(np.arange(-6.0, 2.0001, 0.05), 2)


def matching_margin(start: np.ndarray, tuned: np.ndarray) -> float:
    """The margin of GRID at which `tuned` calls as many pixels as `start` does at 0; a match
    at the grid's edge is no match, and is refused."""
    target = np.count_nonzero(start > 0)
    ordered = np.sort(tuned, axis=None)  # one sort, then every margin's count by bisection
    calls = ordered.size - np.searchsorted(ordered, GRID, side="right")
    best = int(np.argmin(np.abs(calls - target)))
    if best in (0, len(GRID) - 1):
        raise ValueError(f"no margin in {GRID[0]}..{GRID[-1]} matches the start's calls")
    return float(GRID[best])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("start", type=Path)
    ap.add_argument("tuned", type=Path)
    ap.add_argument("--folds", type=int, nargs="+", required=True, help="the slices both trained on")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    data = DataConfig(dataset="ma20", train_folds=[], test_folds=args.folds)
    test = load_test_set(data)
    inputs, truth = model_inputs(test, data), test.labels == ABNORMAL
    margins = [LesionSegmenter(w, model="anamnet", backend="torch", precision="fp32")
               .margins(inputs, test.lungs) for w in (args.start, args.tuned)]

    def at(m: np.ndarray, t: float) -> dict:
        called = m > t
        return {"calls": int(np.count_nonzero(called)),
                "sensitivity": round(np.count_nonzero(called & truth) / np.count_nonzero(truth), 4)}

    margin = matching_margin(*margins)
    out = {"start": at(margins[0], 0.0), "margin": margin, "tuned_at_margin": at(margins[1], margin),
           "tuned": {str(t): at(margins[1], t) for t in (-2.0, -1.5, -1.0, -0.5, 0.0)}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
