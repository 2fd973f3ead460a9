"""What this CPU is fast at: the choice between fp32 and bf16, made once, by detection or timing.

bf16 needs native support (AVX-512 BF16 or AMX): elsewhere it is emulated and many times slower,
so it is never used there. Where it is native, whether it pays depends on the CPU and the work:
on one AVX-512-bf16 EPYC an Anam-Net training step (8 x 128 x 128) took 0.38 s in bf16 against
0.81 s in fp32 (both channels_last), on another bf16 was slower than fp32. So inference uses bf16
where it is native, and training times both (`fastest_precision`) before it commits to one.
Every choice is returned as a word ("fp32" or "bf16") that the caller records.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
# the lesion network's engines (covseg.infer.predictor.Network); here, torch-free, for the CLI
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


def cpu_capability() -> str:
    import torch  # here, not at the top: the CLI reads PRECISIONS without paying for torch

    return torch.backends.cpu.get_cpu_capability()


def cpu_description() -> str:
    """This machine's CPU as a reader weighing a wall time needs it: model, cores, torch's ISA."""
    import torch

    name = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        name = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                     if ln.startswith("model name")), name)
    return (f"{name}, {os.cpu_count()} cores, torch {torch.__version__} on "
            f"{cpu_capability()}, {torch.get_num_threads()} threads")


DEVICES = ("auto", "cpu", "cuda")


def compute_device():
    """Where covseg's PyTorch work (training, the torch backend) runs: the GPU when one is
    visible, else the CPU; COVSEG_DEVICE=cpu|cuda forces one. Decided here, once per call, and
    recorded by the callers (`machine_description`).

    On a GPU, TF32 is turned off, so "fp32" means fp32 there as on the CPU: the precision choice
    stays between fp32 and bf16, timed, and a third arithmetic never enters a record silently.
    """
    import torch

    from covseg.errors import InputError

    choice = os.environ.get("COVSEG_DEVICE", "auto")
    if choice not in DEVICES:
        raise InputError(f"COVSEG_DEVICE={choice}: choose one of {', '.join(DEVICES)}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError("COVSEG_DEVICE=cuda, but PyTorch sees no GPU here: unset it or use cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda")  # the current GPU when used (no CUDA context made here)


def machine_description() -> str:
    """The CPU (`cpu_description`) and, where PyTorch work runs on one, the GPU."""
    import torch

    device = compute_device()
    if device.type != "cuda":
        return cpu_description()
    return f"{torch.cuda.get_device_name(device)} GPU, with {cpu_description()}"


def has_fast_bf16() -> bool:
    """True when the CPU executes bf16 matrix work natively (oneDNN says so).

    COVSEG_NO_BF16=1 turns bf16 off, for a whole run, where a user wants fp32 everywhere.
    """
    if os.environ.get("COVSEG_NO_BF16"):
        return False
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and \
            cpu_capability().startswith("AVX512")
    except (AttributeError, RuntimeError):
        return False


def has_native_bf16(device_type: str = "cpu") -> bool:
    """`has_fast_bf16` for the CPU; a GPU's own answer for "cuda" (COVSEG_NO_BF16 holds there too)."""
    if device_type != "cuda":
        return has_fast_bf16()
    import torch

    return not os.environ.get("COVSEG_NO_BF16") and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str = "auto", device_type: str = "cpu") -> str:
    """"auto" -> "bf16" where the device (`device_type`, as torch names it) has native bf16,
    else "fp32"; other values are checked."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if has_native_bf16(device_type) else "fp32"
    return precision


def autocast(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast for "bf16", a no-op for "fp32" (an already resolved precision).

    `device_type` is "cuda" for a GPU-trained DDP process.
    """
    if precision == "bf16":
        import torch

        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"resolve the precision first (got '{precision}')")
    return contextlib.nullcontext()


def fastest_precision(step: Callable[[str], None], repeats: int = 3,
                      device_type: str = "cpu") -> tuple[str, dict[str, float]]:
    """Time `step(precision)` for fp32 and, where the device has it natively, bf16; the faster
    one and the times.

    The first call of each is a warm-up (oneDNN picks its kernels then). The candidates take
    turns and each keeps its fastest time, so a burst of other work on the machine slows both
    alike instead of deciding the choice.
    """
    candidates = ["fp32", "bf16"] if has_native_bf16(device_type) else ["fp32"]
    for precision in candidates:
        step(precision)
    seconds = {p: float("inf") for p in candidates}
    for _ in range(repeats):
        for precision in candidates:
            t = time.perf_counter()
            step(precision)
            seconds[precision] = min(seconds[precision], time.perf_counter() - t)
    return min(seconds, key=seconds.get), seconds


def set_threads(threads: int | None = None) -> int:
    """Use all cores unless told otherwise (one intra-op thread per core works best for convs)."""
    import torch

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
