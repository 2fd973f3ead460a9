"""Weight-space blends of a start and its fine-tuned run (WiSE-FT, Wortsman et al., CVPR 2022).

    python benchmarks/blend_shares.py START_RUN FINE_TUNED_RUN -o runs/blend --shares 0.25 0.5 0.75

Each share s is written as a run folder OUT/sS (s of the fine-tuned weights and 1 - s of the
start's, tensor by tensor, BatchNorm statistics too; counters from the fine-tuned run) with the
fine-tuned run's config and log, so `covseg ship` and `covseg evaluate` take it as they take any
run. docs/results.md chose the share of the MedSeg fine-tuning this way.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch


def blend(start: dict, trained: dict, share: float) -> dict:
    """`share` of the trained weights and the rest of the start's; both of one network."""
    if start.keys() != trained.keys():
        raise ValueError("the start and the trained weights are of different networks")
    return {k: start[k] + share * (v - start[k]) if v.is_floating_point() else v
            for k, v in trained.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("start", type=Path, help="the run the fine-tuning started from")
    ap.add_argument("tuned", type=Path, help="the fine-tuned run")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    args = ap.parse_args(argv)
    start = torch.load(args.start / "model.pt", map_location="cpu", weights_only=True)
    tuned = torch.load(args.tuned / "model.pt", map_location="cpu", weights_only=True)
    config = json.loads((args.tuned / "config.json").read_text())
    for share in args.shares:
        run = args.output / f"s{round(100 * share)}"
        run.mkdir(parents=True, exist_ok=True)
        torch.save(blend(start, tuned, share), run / "model.pt")
        (run / "config.json").write_text(json.dumps({**config, "blend_share": share}, indent=2))
        shutil.copyfile(args.tuned / "metrics.jsonl", run / "metrics.jsonl")
        print(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
