"""The paper's Table IV, measured here: parameters, size, GMACs and CPU latency per 512x512 slice.

GMACs come from PyTorch's FlopCounterMode (multiply-accumulates = FLOPs / 2) on one 512x512
slice; latency is the median of timed eval-mode forwards, batch 1, fp32, on this CPU, both in
eager PyTorch (the reference) and exported to onnxruntime (the fast path).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from covseg.models import available_models, build_model

# Table IV of Paluru et al. 2021: parameters (M) and model size (MB) where reported.
PAPER_PARAMS_M = {"unet": 31.07, "enet": 0.3437, "unet++": 9.16, "segnet": 29.44,
                  "attention_unet": 34.87, "lednet": 0.91, "deeplabv3+": 54.70, "anamnet": 4.47}
PAPER_SIZE_MB = {"unet": 118.24, "anamnet": 17.21}

NOTES = {
    "attention_unet": "MONAI's gates are lighter than the paper's implementation",
    "deeplabv3+": "ResNet-101 backbone here; the paper's count suggests a lighter one",
}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gmacs(model: torch.nn.Module, size: int = 512) -> float:
    """Multiply-accumulates (x 1e9) of one forward pass on a size x size slice."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 1, size, size))
    return counter.get_total_flops() / 2e9


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `run()` in ms, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def latency_ms(model: torch.nn.Module, size: int = 512, repeats: int = 3) -> float:
    """Median wall time of a batch-1 fp32 forward pass in eager PyTorch."""
    model.eval()
    x = torch.zeros(1, 1, size, size)
    with torch.inference_mode():
        return _median_ms(lambda: model(x), repeats)


def onnx_latency_ms(model: torch.nn.Module, size: int = 512, repeats: int = 3) -> float:
    """The fast path: the same network exported to ONNX, in the predictor's onnxruntime session."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from covseg.infer.onnx_file import export_fp32
    from covseg.infer.backends import onnx_session

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_fp32(model.eval(), path)
        session = onnx_session(path, threads=None)
    x = np.zeros((1, 1, size, size), np.float32)
    return _median_ms(lambda: session.run(None, {"image": x}), repeats)


def profile(name: str, size: int = 512, latency: bool = True) -> dict:
    model = build_model(name)
    params = count_parameters(model)
    row = {"model": name, "params_m": params / 1e6, "size_mb": params * 4 / 2 ** 20,
           "gmac": gmacs(model, size), "paper_params_m": PAPER_PARAMS_M.get(name),
           "paper_size_mb": PAPER_SIZE_MB.get(name), "note": NOTES.get(name, "")}
    row["latency_ms"] = latency_ms(model, size) if latency else None
    row["onnx_ms"] = onnx_latency_ms(model, size) if latency else None
    return row


def _cell(value: float | None, width: int, decimals: int) -> str:
    return f"{value:>{width}.{decimals}f}" if value is not None else f"{'-':>{width}}"


def model_table(names: list[str] | None = None, size: int = 512, latency: bool = True) -> str:
    """Table IV as text, ours beside the paper's figures."""
    names = names or available_models()
    head = (f"{'model':<18}{'params (M)':>11}{'paper':>8}{'size (MB)':>11}{'paper':>8}"
            f"{'GMAC/' + str(size) + chr(178):>13}{'eager ms':>10}{'ORT ms':>9}{'x':>6}  note")
    lines = [head, "-" * len(head)]
    for name in names:
        r = profile(name, size, latency)
        lines.append(f"{name:<18}{r['params_m']:>11.3f}{_cell(r['paper_params_m'], 8, 2)}"
                     f"{r['size_mb']:>11.2f}{_cell(r['paper_size_mb'], 8, 2)}{r['gmac']:>13.1f}"
                     f"{_cell(r['latency_ms'], 10, 0)}{_cell(r['onnx_ms'], 9, 0)}"
                     f"{_cell(r['latency_ms'] / r['onnx_ms'] if latency else None, 6, 1)}  {r['note']}")
    lines.append("size = parameters x 4 bytes (fp32) in MiB; latency per slice, batch 1, fp32: eager "
                 "PyTorch and the same network in onnxruntime (ORT), x = eager / ORT; "
                 f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    return "\n".join(lines)
