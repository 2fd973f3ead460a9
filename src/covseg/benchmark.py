"""`covseg benchmark`: covseg's default path against the reference formulation, in one run.

The volume: the shipped phantom resampled to 512 x 512 pixels a slice (0.7 mm) and `slices`
slices (1 mm), saved as NIfTI. The reference formulation is the paper's published inference:
Anam-Net in eager fp32 PyTorch on the full 512x512 frame, one slice at a time. Running it on every
slice takes many minutes on a laptop CPU, so it is timed on `reference_slices` evenly spaced
slices and its per-slice latency is multiplied out to the volume. covseg's default path runs end
to end (read -> lungs -> lesions -> files) in a child process, so its peak memory (peak RSS) is
its own (VmHWM: see `peak_rss_mib`). Agreement: Dice of the two paths' abnormal masks on the
sampled slices.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from covseg.preprocess.contract import model_input


def make_volume(path: Path, slices: int = 300, size: int = 512) -> Path:
    """The phantom, resampled to `slices` x size x size, written as NIfTI."""
    import torch.nn.functional as F

    from covseg.demo import save_phantom
    from covseg.demo.phantom import Phantom, make_phantom

    base = make_phantom()
    t = torch.from_numpy(base.hu)[None, None]
    hu = F.interpolate(t, size=(slices, size, size), mode="trilinear", align_corners=False)[0, 0]
    hu = hu.numpy() + np.random.default_rng(1).normal(0, 15, hu.shape).astype(np.float32)
    fov = (base.hu.shape[0] * base.spacing[0], base.hu.shape[1] * base.spacing[1],
           base.hu.shape[2] * base.spacing[2])
    spacing = (fov[0] / slices, fov[1] / size, fov[2] / size)
    empty = np.zeros((1, 1, 1), bool)
    return save_phantom(Phantom(hu, spacing, empty.astype(np.uint8), empty), path, force=True)


def peak_rss_mib() -> float:
    """This process's own peak resident memory.

    Linux's ru_maxrss survives fork + exec, so a child started by a big parent would report the
    parent's size; VmHWM belongs to the process's own address space. ru_maxrss elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(scan: str, out: str, backend: str) -> None:
    """Runs in a fresh process: the default path end to end, reports time and peak memory."""
    from covseg.infer import LesionSegmenter
    from covseg.pipeline import segment

    segmenter = LesionSegmenter(backend=backend)  # loaded before the clock starts
    t0 = time.perf_counter()
    result = segment(scan, out, force=True, segmenter=segmenter)
    seconds = time.perf_counter() - t0
    np.save(Path(out) / "labels.npy", result.labels)
    stages = dict(result.report.timings_s)
    stages["write_files"] = round(seconds - sum(stages.values()), 3)
    print(json.dumps({"segment_s": seconds, "stages_s": stages,
                      "max_rss_mib": peak_rss_mib(),
                      "backend": segmenter.backend}))


def run_default(scan: Path, out: Path, backend: str = "auto") -> dict:
    code = ("import sys; from covseg.benchmark import _child; "
            "_child(sys.argv[1], sys.argv[2], sys.argv[3])")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(scan), str(out), backend],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    stats["wall_s"] = wall
    return stats


def run_reference(scan: Path, lungs: np.ndarray, picks: np.ndarray) -> tuple[float, np.ndarray]:
    """Eager fp32 Anam-Net on full 512x512 lung-masked frames, one slice at a time."""
    from covseg.models.weights import load_model
    from covseg.io import read_scan

    model, _ = load_model()
    model.eval()
    volume = read_scan(scan)
    times, masks = [], []
    with torch.inference_mode():
        for z in picks:
            x = model_input(volume.array[z], lungs[z], "hu")
            t0 = time.perf_counter()
            logits = model(torch.from_numpy(x)[None, None])
            times.append(time.perf_counter() - t0)
            masks.append((logits[0].argmax(0).numpy() == 1) & (lungs[z] > 0))
    return float(np.median(times)), np.stack(masks)


def benchmark(slices: int = 300, reference_slices: int = 8, backend: str = "auto",
              workdir: str | Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        scan = make_volume(Path(tmp) / "volume.nii.gz", slices)
        default = run_default(scan, Path(tmp) / "out", backend)
        labels = np.load(Path(tmp) / "out" / "labels.npy")
        with_lungs = np.nonzero((labels > 0).any(axis=(1, 2)))[0]
        picks = with_lungs[np.linspace(0, with_lungs.size - 1, reference_slices).astype(int)]
        ref_latency, ref_masks = run_reference(scan, labels > 0, picks)
    ours = labels[picks] == 1
    inter = float((ours & ref_masks).sum())
    denom = float(ours.sum() + ref_masks.sum())
    return {
        "volume": f"{slices} x 512 x 512 phantom (covseg.benchmark.make_volume)",
        "threads": torch.get_num_threads(), "cpu": torch.backends.cpu.get_cpu_capability(),
        "reference_ms_per_slice": 1000 * ref_latency,
        "reference_volume_s": ref_latency * slices,
        "default_backend": default["backend"],
        "default_volume_s": default["segment_s"],
        "default_wall_s_with_startup": default["wall_s"],
        "default_ms_per_slice": 1000 * default["segment_s"] / slices,
        "speedup": ref_latency * slices / default["segment_s"],
        "default_peak_rss_mib": default["max_rss_mib"],
        "dice_default_vs_reference": 1.0 if denom == 0 else 2 * inter / denom,
        "reference_slices_timed": int(len(picks)),
        "default_stages_s": default["stages_s"],
    }


def format_report(r: dict) -> str:
    return "\n".join([
        f"volume                     {r['volume']}",
        f"cpu                        {r['cpu']}, {r['threads']} threads",
        f"reference (eager fp32 512) {r['reference_ms_per_slice']:.0f} ms/slice -> "
        f"{r['reference_volume_s']:.1f} s/volume (timed on {r['reference_slices_timed']} slices)",
        f"covseg default ({r['default_backend']:<9}) {r['default_ms_per_slice']:.1f} ms/slice -> "
        f"{r['default_volume_s']:.1f} s/volume end to end "
        f"({r['default_wall_s_with_startup']:.1f} s with Python start-up)",
        "  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["default_stages_s"].items()),
        f"speed-up                   {r['speedup']:.1f}x",
        f"peak memory (default path) {r['default_peak_rss_mib']:.0f} MiB",
        f"Dice default vs reference  {r['dice_default_vs_reference']:.3f} (abnormal, sampled slices)",
    ])

