"""The slice viewer's data: every axial slice as small compressed images, for report.html.

Windowing in the browser from 8-bit data would band the mediastinal window, and 16-bit data
does not compress well, so each slice is stored ready to show: one lossy grey WebP per window
preset and one palette PNG of its labels, base64 in a JSON blob that the page's script draws
in a <canvas>. Slices are shrunk so the longest side is at most MAX_SIDE pixels (the model's
scale): a 300-slice scan stays small enough to e-mail (see docs/performance.md).
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image

from covseg.io.scan import Scan
from covseg.labels import ABNORMAL, COLOURS, NORMAL

MAX_SIDE = 256
QUALITIES = (75, 60, 45, 30)  # WebP qualities, best first: the first that fits BUDGET
BUDGET = 8_000_000  # bytes of base64 for all slices: e-mail limits are often 10-25 MB
SAMPLES = 12  # slices encoded to predict the size
PRESETS = {"lung": (-600.0, 1500.0), "mediastinal": (50.0, 350.0)}  # (level, width) in HU


def _b64(image: Image.Image, fmt: str, **options) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _shrink(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float plane resized to (w, h) with area averaging, so noise does not alias."""
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32)


def _grey(plane: np.ndarray, lo: float, hi: float) -> Image.Image:
    return Image.fromarray((np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8))


def _label_png(labels: np.ndarray, size: tuple[int, int]) -> str:
    """Labels by area vote (a lesion a few voxels wide survives the shrink), palette PNG with
    label 0 transparent, so the page blends it with one drawImage at any opacity."""
    votes = np.stack([_shrink(labels == k, size) for k in (0, ABNORMAL, NORMAL)])
    small = np.asarray([0, ABNORMAL, NORMAL], np.uint8)[votes.argmax(axis=0)]
    image = Image.fromarray(small, mode="P")
    palette = [0, 0, 0] * 256
    for k, rgb in COLOURS.items():
        palette[3 * k:3 * k + 3] = rgb
    image.putpalette(palette)
    return _b64(image, "PNG", optimize=True, transparency=0)


def plane_size(shape_yx: tuple[int, int], max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(w, h) of the stored slices: the source's, shrunk so the longest side fits max_side."""
    h, w = shape_yx
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _webp(image: Image.Image, quality: int) -> str:
    return _b64(image, "WEBP", quality=quality, method=4)


def _quality(volume: np.ndarray, size: tuple[int, int], windows: dict) -> int:
    """The best quality whose size, predicted from a few slices, keeps a long scan in BUDGET."""
    picks = np.unique(np.linspace(0, volume.shape[0] - 1, min(SAMPLES, volume.shape[0])).astype(int))
    planes = [_shrink(volume[z], size) for z in picks]
    for quality in QUALITIES:
        sample = sum(len(_webp(_grey(p, lo, hi), quality)) for p in planes for lo, hi in windows.values())
        if sample * volume.shape[0] / len(picks) <= BUDGET:
            return quality
    return QUALITIES[-1]


def _start_slice(labels: np.ndarray) -> int:
    """The most affected slice, else the middle of the lungs, else the middle of the scan."""
    lesion = (labels == ABNORMAL).sum(axis=(1, 2))
    if lesion.any():
        return int(lesion.argmax())
    lungs = np.flatnonzero((labels > 0).any(axis=(1, 2)))
    return int(lungs[lungs.size // 2]) if lungs.size else labels.shape[0] // 2


def viewer_data(scan: Scan, labels: np.ndarray, per_slice: list[float]) -> dict:
    """Everything the viewer shows, as JSON-ready values; slice z is the scan's z (feet first)."""
    size = plane_size(scan.array.shape[1:])
    if scan.is_hu:
        windows = {name: (level - width / 2, level + width / 2) for name, (level, width) in PRESETS.items()}
    else:  # pictures and non-HU volumes: their own grey levels, one range for the whole scan
        windows = {"image": (float(scan.array.min()), float(scan.array.max()))}
    quality = _quality(scan.array, size, windows)
    images: dict[str, list[str]] = {name: [] for name in windows}
    masks = []
    for z in range(scan.array.shape[0]):
        plane = _shrink(scan.array[z], size)
        for name, (lo, hi) in windows.items():
            images[name].append(_webp(_grey(plane, lo, hi), quality))
        masks.append(_label_png(labels[z], size))
    dy, dx = scan.spacing[1:] if scan.spacing_known else (1.0, 1.0)
    return {"slices": int(scan.array.shape[0]), "width": size[0], "height": size[1],
            "aspect": float(dy / dx), "hu": bool(scan.is_hu),
            "presets": {name: f"W{PRESETS[name][1]:.0f}/L{PRESETS[name][0]:.0f}" for name in windows
                        if name in PRESETS},
            "quality": quality, "start": _start_slice(labels), "per_slice": [float(v) for v in per_slice],
            "images": images, "labels": masks}


def data_script(data: dict) -> str:
    """The JSON as an inert <script> block; '</' is escaped so no value can close it."""
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="covseg-viewer-data">{text}</script>'
