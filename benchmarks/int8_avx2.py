"""The shipped int8 model on a CPU without AVX-512 or VNNI, emulated (issue 16, item 4).

    python benchmarks/int8_avx2.py [--cpu Haswell-v4] [SCAN ...]   (default: real_ct and the demo)

onnxruntime picks its int8 kernels from the CPU's CPUID, and no setting forces the AVX2 ones
(`ATEN_CPU_CAPABILITY` only moves PyTorch). On AVX2 the u8 x s8 products are summed in pairs
into int16 (vpmaddubsw), where VNNI sums into int32, so the numbers can differ. qemu-user
(`apt-get install qemu-user`) runs a program with the CPUID of the model it is given: Haswell
has AVX2 and FMA, no AVX-512. Emulated, a slice takes about a minute, so only the network runs
there:

1. covseg segments the scan natively and every input the int8 network gets is recorded;
2. the shipped int8 ONNX runs on those inputs under qemu (this file with --emulated);
3. covseg segments the scan again natively with the int8 network's outputs replaced by the
   emulated ones (the int8 audit and everything after the network run as they would), and the
   lesion volume is compared with PyTorch fp32's.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COVSEG_DATA_ROOT", ROOT.parent / "shared" / "data"))
INT8 = ROOT / "src" / "covseg" / "weights" / "anamnet_ma20.int8.onnx"


def emulated(inputs: Path, outputs: Path) -> None:
    """Step 2, inside qemu: numpy and onnxruntime only (importing PyTorch there takes minutes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(INT8), opts, providers=["CPUExecutionProvider"])
    recorded = np.load(inputs)
    t0 = time.perf_counter()
    results = {}
    for i in range(len(recorded.files)):
        results[f"y{i}"] = session.run(None, {"image": recorded[f"x{i}"]})[0]
        print(f"{i + 1}/{len(recorded.files)} {recorded[f'x{i}'].shape} "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    np.savez(outputs, **results)


def _segment(scan: Path, int8_call=None):
    """covseg.segment with the default (int8) segmenter; `int8_call` wraps its network."""
    import covseg
    from covseg.infer import LesionSegmenter, backends

    original = backends.OnnxBackend.__call__
    if int8_call is not None:
        backends.OnnxBackend.__call__ = lambda self, x: (
            int8_call(original, self, x) if self.precision == "int8" else original(self, x))
    try:
        return covseg.segment(scan, segmenter=LesionSegmenter(None), pictures=False)
    finally:
        backends.OnnxBackend.__call__ = original


def compare(scan: Path, cpu: str, work: Path) -> str:
    import covseg
    from covseg.infer import LesionSegmenter

    calls: list[tuple[np.ndarray, np.ndarray]] = []

    def record(original, self, x):
        y = original(self, x)
        calls.append((x.copy(), y))
        return y
    native = _segment(scan, record).quantification.lesion_ml
    inputs, outputs = work / "inputs.npz", work / "outputs.npz"
    np.savez(inputs, **{f"x{i}": x for i, (x, _) in enumerate(calls)})
    t0 = time.perf_counter()
    subprocess.run(["qemu-x86_64", "-cpu", cpu, sys.executable, __file__, "--emulated",
                    str(inputs), str(outputs)], check=True, stderr=subprocess.DEVNULL)
    minutes = (time.perf_counter() - t0) / 60
    emulated_out = np.load(outputs)
    avx2 = [emulated_out[f"y{i}"] for i in range(len(calls))]
    step = iter(range(len(calls)))

    def replay(original, self, x):
        i = next(step)
        if not np.array_equal(x, calls[i][0]):
            raise RuntimeError("the second pass gave the network other inputs than the first")
        return avx2[i]
    report = _segment(scan, replay).report.to_dict()
    fp32 = covseg.segment(scan, segmenter=LesionSegmenter(None, backend="torch", precision="fp32"),
                          pictures=False).quantification.lesion_ml
    ml = report["quantification"]["lesion_ml"]
    logit = max(float(np.abs(a - y).max()) for a, (_, y) in zip(avx2, calls))
    agree = np.mean([(a.argmax(1) == y.argmax(1)).mean() for a, (_, y) in zip(avx2, calls)])
    slices = sum(len(x) for x, _ in calls)
    return (f"| {scan.name} | {slices} | {logit:.3f} | {agree:.6f} | {native:.2f} | {ml:.2f} | "
            f"{report['model']['fp32_slices']} | {fp32:.2f} | {100 * (ml - fp32) / fp32:+.2f} % | "
            f"{minutes:.0f} |")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scans", nargs="*", type=Path)
    ap.add_argument("--cpu", default="Haswell-v4", help="qemu CPU model (default: AVX2, no AVX-512)")
    ap.add_argument("--emulated", nargs=2, type=Path, metavar=("INPUTS", "OUTPUTS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.emulated:
        emulated(*args.emulated)
        return 0
    import covseg
    from covseg.demo import save_phantom

    print("| input | slices through the network | largest logit change, VNNI -> AVX2 | argmax "
          "agreement | lesion mL, int8 here | lesion mL, int8 on AVX2 | slices the audit moved "
          "to fp32 (AVX2) | lesion mL, PyTorch fp32 | AVX2 int8 vs fp32 | emulated minutes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        scans = args.scans or [DATA / "real_ct" / "example_ct.nii.gz",
                               save_phantom(covseg.make_phantom(), Path(tmp) / "phantom.nii.gz")]
        for scan in scans:
            print(compare(scan, args.cpu, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
