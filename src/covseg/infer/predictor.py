"""`LesionSegmenter().predict(images, lungs)`: lung-masked slices in, 0/1/2 label maps out.

Only the lungs' bounding box of each slice is run through the network (padded to a multiple of
16), and outside the lung mask the label is background by definition: the network only decides
abnormal versus normal inside the lungs.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from covseg.errors import InputError
from covseg.infer.postprocess import PostProcess
from covseg.labels import ABNORMAL, NORMAL
from covseg.models.weights import (DEFAULT_INT8, DEFAULT_WEIGHTS, WEIGHTS_DIR, cached_onnx,
                                   describe_weights, load_model, sha256)
from covseg.runtime import BACKENDS, autocast, resolve_precision

__all__ = ["BACKENDS", "LesionSegmenter", "Network", "load_model", "sha256", "onnx_session",
           "DEFAULT_WEIGHTS", "DEFAULT_INT8", "WEIGHTS_DIR", "ensemble_meta"]

MULTIPLE = 16


def onnx_session(path: Path, threads: int | None):
    """The onnxruntime CPU session every ONNX path uses (inference and Table IV's ORT column)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def _ceil16(n: int) -> int:
    return -(-n // MULTIPLE) * MULTIPLE


def _padded_box(box: tuple[slice, slice], shape: tuple[int, int]) -> tuple[slice, slice]:
    """Grow a box to sides that are multiples of 16 with image context, clipped to the image."""
    out = []
    for s, n in zip(box, shape):
        size = _ceil16(s.stop - s.start)
        start = max(0, min(s.start - (size - (s.stop - s.start)) // 2, n - size))
        out.append(slice(start, min(start + size, n)))
    return tuple(out)


def _check_lesion_classes(model: torch.nn.Module, weights: str | Path | None) -> None:
    """A lesion network must give Anam-Net's three classes; a lung model (two) is refused here,
    not by an index error deep in the post-processing."""
    with torch.inference_mode():
        classes = model.eval()(torch.zeros(1, 1, 32, 32)).shape[1]
    if classes != 3:
        raise InputError(f"{weights}: these weights give {classes} classes, not the 3 of a lesion "
                         "model (outside, abnormal, normal lung); is this a lung model?")


class Network:
    """One set of weights on one inference engine: (N, 1, H, W) inputs -> (N, C, H, W) logits.

    backend: "torch" (PyTorch), "onnx" (onnxruntime fp32, exported from the weights on first use),
    "onnx-int8" (the shipped statically quantized model), or "auto": the shipped int8 model for
    the shipped weights, else PyTorch.
    precision (torch only): "fp32", "bf16" (autocast), or "auto": bf16 where the CPU has native
    bf16. `backend` and `precision` hold what was chosen, for the report.
    """

    def __init__(self, weights: str | Path | None = None, model: str | None = None,
                 backend: str = "auto", threads: int | None = None, precision: str = "auto"):
        if backend not in BACKENDS:
            raise InputError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
        self.model, self.meta = load_model(weights, model)
        _check_lesion_classes(self.model, weights)
        if backend == "auto":
            backend = "onnx-int8" if weights is None and DEFAULT_INT8.is_file() else "torch"
        self.backend = backend
        self.precision = resolve_precision(precision) if backend == "torch" else \
            ("int8" if backend == "onnx-int8" else "fp32")
        if backend == "torch":
            self.model = self.model.to(memory_format=torch.channels_last)
            self._session = None
        else:
            self._session = onnx_session(self._onnx_path(weights, backend), threads)

    def _onnx_path(self, weights: str | Path | None, backend: str) -> Path:
        if backend == "onnx-int8":
            if weights is not None:
                raise InputError("the int8 backend runs the shipped model only; export your "
                                 "weights with `covseg export --int8` and run them with onnxruntime")
            return DEFAULT_INT8
        return cached_onnx(self.model, self.meta["sha256"])  # named by the file's own hash

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"image": x})[0]
        with torch.inference_mode(), autocast(self.precision):
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self.model(t).float().numpy()


def ensemble_meta(metas: list[dict]) -> dict:
    """Metadata of several networks averaged as one: names, training data and one combined hash."""
    joined = hashlib.sha256("".join(m["sha256"] for m in metas).encode()).hexdigest()
    return {"name": "ensemble of " + ", ".join(m.get("name", "custom") for m in metas),
            "sha256": joined, "members": [describe_weights(m) for m in metas],
            "trained_on": [m.get("trained_on") for m in metas]}


class LesionSegmenter:
    """Runs a segmentation network, or several averaged, over lung-masked slices, batch by batch.

    weights: one weights file (default: the shipped Anam-Net) or several, whose logits are
    averaged (an ensemble, e.g. the models of a cross-validation); backend: see `Network`.
    mirror: also run the left-right mirrored slices and average (test-time augmentation with the
    flips the models trained with; twice the time). precision: see `Network`.
    postprocess: how labels are cut from the network's output; default: the values tuned for
    these weights in their metadata (none for weights without them, or for ensembles whose
    members disagree).
    """

    def __init__(self, weights: str | Path | list[str | Path] | None = None,
                 model: str | None = None, batch_size: int = 8, backend: str = "auto",
                 threads: int | None = None, postprocess: PostProcess | None = None,
                 mirror: bool = False, precision: str = "auto"):
        paths = list(weights) if isinstance(weights, (list, tuple)) else [weights]
        if not paths:
            raise InputError("no weights given")
        self.networks = [Network(path, model, backend, threads, precision) for path in paths]
        metas = [net.meta for net in self.networks]
        self.meta = metas[0] if len(metas) == 1 else ensemble_meta(metas)
        if postprocess is None:
            rules = {PostProcess.from_meta(m) for m in metas}
            postprocess = rules.pop() if len(rules) == 1 else PostProcess()
        self.postprocess = postprocess
        self.backend = self.networks[0].backend
        self.precision = self.networks[0].precision
        self.mirror = mirror
        self.batch_size = batch_size

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 inputs with H, W multiples of 16 -> (N, C, H, W) mean logits."""
        views = [np.ascontiguousarray(batch[:, None], dtype=np.float32)]
        if self.mirror:
            views.append(np.ascontiguousarray(views[0][..., ::-1]))
        total = None
        for net in self.networks:
            for k, x in enumerate(views):
                out = net(x) if k == 0 else net(x)[..., ::-1]
                total = out if total is None else total + out
        return total / (len(self.networks) * len(views))

    def _box_logits(self, images: np.ndarray, lungs: np.ndarray
                    ) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray]]:
        """Yield (slice index, box, logits of the box) for every slice with lungs, batch by batch."""
        jobs = [(i, _bbox(lungs[i])) for i in range(len(images))]
        jobs = [(i, _padded_box(b, images.shape[1:])) for i, b in jobs if b is not None]
        # group equal box sizes so each batch is one tensor
        jobs.sort(key=lambda j: (j[1][0].stop - j[1][0].start, j[1][1].stop - j[1][1].start))
        for k in range(0, len(jobs), self.batch_size):
            group = jobs[k:k + self.batch_size]
            h = _ceil16(max(b[0].stop - b[0].start for _, b in group))
            w = _ceil16(max(b[1].stop - b[1].start for _, b in group))
            batch = np.zeros((len(group), h, w), dtype=np.float32)
            for n, (i, (ys, xs)) in enumerate(group):
                crop = images[i, ys, xs]
                batch[n, :crop.shape[0], :crop.shape[1]] = crop
            out = self.logits(batch)
            for n, (i, (ys, xs)) in enumerate(group):
                yield i, (ys, xs), out[n, :, :ys.stop - ys.start, :xs.stop - xs.start]

    def margins(self, images: np.ndarray, lungs: np.ndarray) -> np.ndarray:
        """(N, H, W) abnormal-minus-normal logits inside the lungs (-inf outside).

        The raw evidence the lung-restricted labels are cut from; `covseg tune` searches it.
        """
        images = np.asarray(images, dtype=np.float32)
        lungs = np.asarray(lungs) > 0
        out = np.full(images.shape, -np.inf, dtype=np.float32)
        for i, (ys, xs), crop in self._box_logits(images, lungs):
            out[i, ys, xs] = np.where(lungs[i, ys, xs], crop[ABNORMAL] - crop[NORMAL], -np.inf)
        return out

    def predict(self, images: np.ndarray, lungs: np.ndarray | None) -> np.ndarray:
        """(N, H, W) model inputs and lung masks -> (N, H, W) uint8 labels 0/1/2.

        Inside the lungs the label follows the post-processing rule (see `PostProcess`).
        `lungs` None (models trained without lung masking): whole slices are run and the
        network also decides what is lung (full argmax, no post-processing).
        """
        images = np.asarray(images, dtype=np.float32)
        if lungs is not None:
            lungs = np.asarray(lungs) > 0
            return self.postprocess.labels(self.margins(images, lungs), lungs)
        labels = np.zeros(images.shape, dtype=np.uint8)
        everywhere = np.ones(images.shape, dtype=bool)
        for i, (ys, xs), crop in self._box_logits(images, everywhere):
            labels[i, ys, xs] = crop.argmax(axis=0)
        return labels
