"""What issue 24's additions cost: `covseg segment` of the benchmark volume with them and without.

    python benchmarks/density_speed.py [--pairs 4] [--slices 300]

"Without" runs the same CLI with the density gate, the density figures, the pleural bites and
the bridge between slices switched off (see `_without`); the two run in turn, in fresh
processes, after one warm-up each, and the wall-time ratio is taken pair by pair.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WITHOUT = """
import sys
import numpy as np
import covseg.lungs.threshold as T
import covseg.pipeline as P
from covseg.infer.density import DensityGate
P.gate_by_density = lambda labels, hu, spacing: DensityGate(0, 0, 0, 0)
P.quantify_density = lambda *a, **k: None
T.pleural_bites = lambda lung, hu, lateral, pixel_mm: np.zeros(lung.shape, bool)
T.bridge_slices = lambda side, *a, **k: side
from covseg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--slices", type=int, default=300)
    args = ap.parse_args()
    from covseg.benchmark import make_volume

    with tempfile.TemporaryDirectory() as tmp:
        volume = make_volume(Path(tmp) / "volume.nii.gz", args.slices)
        seg = ["segment", str(volume), "--force", "-o"]
        with_ = [sys.executable, "-m", "covseg", *seg, f"{tmp}/with"]
        without = [sys.executable, "-c", WITHOUT, *seg, f"{tmp}/without"]
        _run(with_), _run(without)  # warm-up: page cache, ONNX export cache
        pairs = [(_run(with_), _run(without)) for _ in range(args.pairs)]
    ratios = [a / b for a, b in pairs]
    print(f"with the additions    median {statistics.median(a for a, _ in pairs):.2f} s")
    print(f"without them          median {statistics.median(b for _, b in pairs):.2f} s")
    print(f"ratio with / without  median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
