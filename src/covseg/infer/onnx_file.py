"""fp32 ONNX files of lesion networks, for the onnx backend: the export, and the one cache of
them (exported from a weights file on first use).

It lives in the user's cache folder (platformdirs, mode 0700), not a shared /tmp; each export is
named by the hash of the weights file it came from and verified by its own recorded hash before
it is run, so a planted, damaged or half-written file is exported again, never trusted.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from covseg.models.weights import HEX64, sha256

INPUT, OUTPUT = "image", "logits"
OPSET = 17


def export_fp32(model: torch.nn.Module, path: Path) -> None:
    """fp32 ONNX with batch, height and width dynamic (TorchScript exporter: no onnxscript needed)."""
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, 1, 128, 128),), str(path), dynamo=False,
                          input_names=[INPUT], output_names=[OUTPUT], opset_version=OPSET,
                          dynamic_axes={INPUT: dynamic, OUTPUT: dynamic})


def onnx_cache_dir() -> Path:
    """The user's own cache folder for ONNX exports, private (0700)."""
    import platformdirs

    path = Path(platformdirs.user_cache_dir("covseg")) / "onnx"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def cached_onnx(model: torch.nn.Module, weights_sha256: str) -> Path:
    """The fp32 ONNX export of `model`, made once per weights file and checked on every use."""
    if not HEX64.fullmatch(weights_sha256):
        raise ValueError(f"not a sha256 hex digest: {weights_sha256!r}")
    cache = onnx_cache_dir()
    path, record = cache / f"{weights_sha256}.onnx", cache / f"{weights_sha256}.onnx.sha256"
    if path.is_file() and record.is_file() and record.read_text().strip() == sha256(path):
        return path
    tmp = cache / f".{weights_sha256}.{os.getpid()}.onnx"
    try:
        export_fp32(model, tmp)
        record_tmp = cache / f".{weights_sha256}.{os.getpid()}.sha256"
        record_tmp.write_text(sha256(tmp) + "\n")
        os.replace(tmp, path)
        os.replace(record_tmp, record)
    finally:
        tmp.unlink(missing_ok=True)
    return path
