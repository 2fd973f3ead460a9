"""Execution: one set of weights on one inference engine, behind one small interface.

`Backend` is all the rest of covseg sees: `backend(x)` maps (N, 1, H, W) float32 inputs to
(N, C, H, W) logits, and `name`, `precision` and `file_sha256` say what ran. Engines:
"torch" (PyTorch, fp32 or bf16 autocast), "onnx" (onnxruntime fp32, exported from the weights
on first use through covseg.infer.onnx_file), "onnx-int8" (the shipped statically quantized
model). `Network` picks one ("auto": the shipped int8 model for the shipped weights, else
PyTorch) and records the choice.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from covseg.errors import InputError
from covseg.models import input_multiple
from covseg.models.weights import DEFAULT_INT8, load_model, sha256
from covseg.runtime import BACKENDS, autocast, compute_device, resolve_precision


class Backend(Protocol):
    """An engine running one network."""

    name: str  # one of covseg.runtime.BACKENDS, never "auto"
    precision: str  # fp32 | bf16 | int8
    file_sha256: str  # the hash of the file whose numbers run (the int8 ONNX for onnx-int8)

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def onnx_session(path: Path, threads: int | None, arena: bool = True):
    """The onnxruntime CPU session every ONNX path uses (inference and Table IV's ORT column).

    `arena` False: activations are freed after each run instead of kept in onnxruntime's
    memory arena (the int8 audit's fp32 session lives beside the int8 one; with its own arena
    it added 385 MiB to a 300-slice scan's peak; without it, run a slice at a time, 75-90 MiB)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = arena
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class TorchBackend:
    """PyTorch in channels-last memory, under the chosen precision's autocast, on
    `covseg.runtime.compute_device()` (the GPU where there is one; "auto" precision is decided
    for that device)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, precision: str, file_sha256: str) -> None:
        self.device = compute_device()
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.precision = resolve_precision(precision, self.device.type)
        self.file_sha256 = file_sha256

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), autocast(self.precision, self.device.type):
            t = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model(t).float().cpu().numpy()


class OnnxBackend:
    """An ONNX file under onnxruntime: an fp32 export, or the shipped int8 model. Only the
    int8 session keeps a memory arena: an fp32 one is, by default, the int8 audit's reference."""

    def __init__(self, path: Path, name: str, threads: int | None) -> None:
        self.name, self.precision = name, "int8" if name == "onnx-int8" else "fp32"
        self.file_sha256 = sha256(path)
        self._session = onnx_session(path, threads, arena=self.precision == "int8")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"image": x})[0]


def open_backend(model: torch.nn.Module, weights_sha256: str, backend: str, shipped: bool,
                 threads: int | None = None, precision: str = "auto") -> Backend:
    """The engine `backend` names for this network; "auto" is decided here, once."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "onnx-int8" if shipped and DEFAULT_INT8.is_file() else "torch"
    if backend == "torch":
        return TorchBackend(model, precision, weights_sha256)
    if backend == "onnx-int8":
        if not shipped:
            raise InputError("the int8 backend runs the shipped model only; export your "
                             "weights with `covseg export --int8` and run them with onnxruntime")
        return OnnxBackend(DEFAULT_INT8, backend, threads)
    from covseg.infer.onnx_file import cached_onnx

    return OnnxBackend(cached_onnx(model, weights_sha256), backend, threads)  # by the file's hash


def _check_lesion_classes(model: torch.nn.Module, weights: str | Path | None) -> None:
    """A lesion network must give Anam-Net's three classes; a lung model (two) is refused here,
    not by an index error deep in the post-processing."""
    with torch.inference_mode():
        classes = model.eval()(torch.zeros(1, 1, 32, 32)).shape[1]
    if classes != 3:
        raise InputError(f"{weights}: these weights give {classes} classes, not the 3 of a lesion "
                         "model (outside, abnormal, normal lung); is this a lung model?")


class Network:
    """A lesion network's weights (default: the shipped Anam-Net) on its engine.

    `backend` and `precision` hold what was chosen, for the report; `meta` is the weights'
    metadata with `sha256` the weights file's own hash; `multiple` the side lengths it takes.
    """

    def __init__(self, weights: str | Path | None = None, model: str | None = None,
                 backend: str = "auto", threads: int | None = None, precision: str = "auto"):
        net, self.meta = load_model(weights, model)
        _check_lesion_classes(net, weights)
        self.multiple = input_multiple(net)
        self.engine = open_backend(net, self.meta["sha256"], backend, weights is None, threads,
                                   precision)
        self.backend, self.precision = self.engine.name, self.engine.precision

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.engine(x)
