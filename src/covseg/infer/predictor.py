"""`LesionSegmenter().predict(images, lungs)`: lung-masked slices in, 0/1/2 label maps out.

Only the lungs' bounding box of each slice is run through the network (padded to the side
lengths the network takes: multiples of 16 for Anam-Net, 32 for the encoder U-Nets), and
outside the lung mask the label is background by definition: the network only decides abnormal
versus normal inside the lungs.
"""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covseg.errors import InputError
from covseg.infer.backends import Network
from covseg.infer.postprocess import PostProcess
from covseg.labels import ABNORMAL, NORMAL
from covseg.models.weights import describe_weights

# The int8 model is checked against fp32 on every batch it runs (LesionSegmenter._audited): its
# AUDIT_SLICES slices with the most abnormal or near-abnormal pixels are run again in fp32; when
# their abnormal pixel counts differ by more than AUDIT_SHARE of the fp32 count (plus
# AUDIT_PSEUDO_PX, so a few pixels of a small lesion do not decide), int8 is not to be trusted on
# this input and the whole batch runs in fp32. Measured (docs/performance.md): on ma20-like
# input (the phantom, the benchmark volume) the audited slices differ by 0.2-1.1 % of that
# measure, on real_ct and the DICOM slices by 7-10 %, where int8 alone reported 7-11 % less lesion.
AUDIT_SLICES = 3
AUDIT_SHARE = 0.02
AUDIT_PSEUDO_PX = 200
AUDIT_BAND = 0.5  # "near-abnormal": a margin within this of the cut


@dataclass
class PrecisionAudit:
    """What the int8 audit did for one scan: slices re-run in fp32 to check int8, and slices
    run in fp32 because a check failed. Zero for the fp32 and bf16 backends."""

    audited_slices: int = 0
    fp32_slices: int = 0


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def _ceil(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _padded_box(box: tuple[slice, slice], shape: tuple[int, int], multiple: int
                ) -> tuple[slice, slice]:
    """Grow a box to sides that are multiples of `multiple` with image context, clipped to the
    image."""
    out = []
    for s, n in zip(box, shape):
        size = _ceil(s.stop - s.start, multiple)
        start = max(0, min(s.start - (size - (s.stop - s.start)) // 2, n - size))
        out.append(slice(start, min(start + size, n)))
    return tuple(out)


def ensemble_meta(metas: list[dict]) -> dict:
    """Metadata of several networks averaged as one: names, training data and one combined hash."""
    joined = hashlib.sha256("".join(m["sha256"] for m in metas).encode()).hexdigest()
    return {"name": "ensemble of " + ", ".join(m.get("name", "custom") for m in metas),
            "sha256": joined, "members": [describe_weights(m) for m in metas],
            "trained_on": [m.get("trained_on") for m in metas]}


class LesionSegmenter:
    """Runs a segmentation network, or several averaged, over lung-masked slices, batch by batch.

    weights: one weights file (default: the shipped Anam-Net) or several, whose logits are
    averaged (an ensemble, e.g. the models of a cross-validation); backend: see
    covseg.infer.backends.
    mirror: also run the left-right mirrored slices and average (test-time augmentation with the
    flips the models trained with; twice the time). precision: see covseg.infer.backends.
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
        files = [net.engine.file_sha256 for net in self.networks]  # what ran, e.g. the int8 file
        self.file_sha256 = files[0] if len(files) == 1 else \
            hashlib.sha256("".join(files).encode()).hexdigest()
        self.mirror = mirror
        self.batch_size = batch_size
        self.multiple = max(net.multiple for net in self.networks)  # the sides every net takes
        self._threads = threads
        self._fp32: LesionSegmenter | None = None  # the int8 audit's reference, made on first use

    def views(self, flips: bool = False) -> list[tuple[int, ...]]:
        """The axes each averaged view flips: with `flips`, the slices as they are, mirrored,
        upside down and both (a picture's result then does not depend on which of these it was
        given as); else as they are, and mirrored with `mirror`."""
        if flips:
            return [(), (-1,), (-2,), (-2, -1)]
        return [(), (-1,)] if self.mirror else [()]

    def logits(self, batch: np.ndarray, flips: bool = False) -> np.ndarray:
        """(N, H, W) float32 inputs with H, W multiples of `multiple` -> (N, C, H, W) logits,
        the mean over the networks and `views(flips)`."""
        x = np.ascontiguousarray(batch[:, None], dtype=np.float32)
        views = self.views(flips)
        total = None
        for net in self.networks:
            for axes in views:
                out = net(np.ascontiguousarray(np.flip(x, axes)) if axes else x)
                out = np.flip(out, axes) if axes else out
                total = out if total is None else total + out
        return total / (len(self.networks) * len(views))

    def _box_logits(self, images: np.ndarray, lungs: np.ndarray, flips: bool = False
                    ) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray]]:
        """Yield (slice index, box, logits of the box) for every slice with lungs, batch by batch."""
        jobs = [(i, _bbox(lungs[i])) for i in range(len(images))]
        jobs = [(i, _padded_box(b, images.shape[1:], self.multiple)) for i, b in jobs
                if b is not None]
        # a batch holds boxes of one size only: padding a box to a larger neighbour's size
        # would change what the network sees, and so its calls, with the batch's company (on
        # real_ct's borderline calls by 5 % of the lesion volume)
        def size(job: tuple[int, tuple[slice, slice]]) -> tuple[int, int]:
            return tuple(_ceil(s.stop - s.start, self.multiple) for s in job[1])

        jobs.sort(key=size)
        batches = [same[k:k + self.batch_size]
                   for same in (list(g) for _, g in itertools.groupby(jobs, key=size))
                   for k in range(0, len(same), self.batch_size)]
        for group in batches:
            h, w = size(group[0])
            batch = np.zeros((len(group), h, w), dtype=np.float32)
            for n, (i, (ys, xs)) in enumerate(group):
                crop = images[i, ys, xs]
                batch[n, :crop.shape[0], :crop.shape[1]] = crop
            out = self.logits(batch, flips)
            for n, (i, (ys, xs)) in enumerate(group):
                yield i, (ys, xs), out[n, :, :ys.stop - ys.start, :xs.stop - xs.start]

    def margins(self, images: np.ndarray, lungs: np.ndarray, flips: bool = False,
                audit: PrecisionAudit | None = None) -> np.ndarray:
        """(N, H, W) abnormal-minus-normal logits inside the lungs (-inf outside).

        The raw evidence the lung-restricted labels are cut from; `covseg tune` searches it.
        On the int8 backend, audited against fp32 (see AUDIT_SLICES); `audit` counts what that did.
        """
        images = np.asarray(images, dtype=np.float32)
        lungs = np.asarray(lungs) > 0
        out = np.full(images.shape, -np.inf, dtype=np.float32)
        for i, (ys, xs), crop in self._box_logits(images, lungs, flips):
            out[i, ys, xs] = np.where(lungs[i, ys, xs], crop[ABNORMAL] - crop[NORMAL], -np.inf)
        if self.precision == "int8":
            self._audited(images, lungs, flips, out, audit or PrecisionAudit())
        return out

    def _reference(self) -> LesionSegmenter:
        """The same network in fp32 on onnxruntime (exported once into the user's cache; 2-3x
        faster than PyTorch fp32 on 2 cores, and the same arithmetic within 1e-4), one slice at
        a time: as fast as batches of 8 here, and its activations stay a slice's worth."""
        if self._fp32 is None:
            settings = dict(batch_size=1, threads=self._threads, postprocess=self.postprocess,
                            mirror=self.mirror)
            try:
                self._fp32 = LesionSegmenter(None, backend="onnx", **settings)
            except OSError:  # no writable cache for the export: PyTorch fp32, the same numbers
                self._fp32 = LesionSegmenter(None, backend="torch", precision="fp32", **settings)
        return self._fp32

    def _audited(self, images: np.ndarray, lungs: np.ndarray, flips: bool, out: np.ndarray,
                 audit: PrecisionAudit) -> None:
        """Check int8 margins `out` against fp32 on a few slices, in place; a failed check
        replaces the whole batch by fp32."""
        cut = self.postprocess.margin
        with_lungs = np.flatnonzero(lungs.any(axis=(1, 2)))
        if with_lungs.size == 0:
            return
        # the slices with the most abnormal or near-abnormal pixels; where none has any, those
        # closest to the cut (an int8 error larger than the band must not hide a lesion)
        candidates = out[with_lungs]
        near = np.count_nonzero(candidates > cut - AUDIT_BAND, axis=(1, 2))
        top = candidates.max(axis=(1, 2))
        picks = np.sort(with_lungs[np.lexsort((-top, -near))[:AUDIT_SLICES]])
        reference = self._reference()
        checked = reference.margins(images[picks], lungs[picks], flips)
        n8, n32 = np.count_nonzero(out[picks] > cut), np.count_nonzero(checked > cut)
        out[picks] = checked
        audit.audited_slices += picks.size
        if abs(n8 - n32) <= AUDIT_SHARE * (n32 + AUDIT_PSEUDO_PX):
            return
        rest = np.setdiff1d(with_lungs, picks)
        if rest.size:
            out[rest] = reference.margins(images[rest], lungs[rest], flips)
        audit.fp32_slices += rest.size

    def predict(self, images: np.ndarray, lungs: np.ndarray | None, flips: bool = False,
                audit: PrecisionAudit | None = None) -> np.ndarray:
        """(N, H, W) model inputs and lung masks -> (N, H, W) uint8 labels 0/1/2.

        Inside the lungs the label follows the post-processing rule (see `PostProcess`).
        `lungs` None (models trained without lung masking): whole slices are run and the
        network also decides what is lung (full argmax, no post-processing). `flips`: see
        `logits`; `audit`: see `margins`.
        """
        images = np.asarray(images, dtype=np.float32)
        if lungs is not None:
            lungs = np.asarray(lungs) > 0
            return self.postprocess.labels(self.margins(images, lungs, flips, audit), lungs)
        labels = np.zeros(images.shape, dtype=np.uint8)
        everywhere = np.ones(images.shape, dtype=bool)
        for i, (ys, xs), crop in self._box_logits(images, everywhere, flips):
            labels[i, ys, xs] = crop.argmax(axis=0)
        return labels
