"""Pictures a doctor can read: overlays in the paper's colours, a montage, an involvement plot.

Abnormal tissue is red and normal lung green, as in Anam-Net's figures, blended over the slice
in a lung window (-1350..150 HU) or, for pictures, over their own grey levels.
"""
from __future__ import annotations

import io

import numpy as np

from covseg.intensity import Intensity
from covseg.labels import ABNORMAL, COLOURS

LUNG_WINDOW = (-1350.0, 150.0)
ALPHA = 0.4


def to_grey(plane: np.ndarray, intensity: Intensity) -> np.ndarray:
    """A slice as 8-bit grey: lung window for HU, min-max for pictures."""
    plane = np.asarray(plane, dtype=np.float32)
    lo, hi = LUNG_WINDOW if intensity is Intensity.HU else (float(plane.min()), float(plane.max()))
    return (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def overlay(plane: np.ndarray, labels: np.ndarray, intensity: Intensity) -> np.ndarray:
    """(H, W, 3) uint8: the slice with abnormal in red and normal lung in green."""
    grey = to_grey(plane, intensity)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    for label, colour in COLOURS.items():
        m = labels == label
        rgb[m] = (1 - ALPHA) * rgb[m] + ALPHA * np.asarray(colour, np.float32)
    return rgb.astype(np.uint8)


def most_affected(labels: np.ndarray, k: int) -> list[int]:
    """Indices of the k slices with the largest lesion area, most affected first."""
    area = (labels == 1).sum(axis=(1, 2))
    order = [int(z) for z in np.argsort(area)[::-1] if area[z] > 0]
    return order[:k]


def montage(volume: np.ndarray, labels: np.ndarray, intensity: Intensity, tiles: int = 12,
            tile_px: int = 192) -> np.ndarray:
    """Evenly spaced slices through the lungs, overlaid, in a grid of 4 columns."""
    from PIL import Image

    with_lungs = np.nonzero((labels > 0).any(axis=(1, 2)))[0]
    if with_lungs.size == 0:
        with_lungs = np.arange(volume.shape[0])
    picks = np.unique(np.linspace(with_lungs[0], with_lungs[-1], min(tiles, with_lungs.size)).astype(int))
    cols = min(4, picks.size)
    rows = -(-picks.size // cols)
    h = tile_px
    w = int(round(tile_px * volume.shape[2] / volume.shape[1]))
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for n, z in enumerate(picks[::-1]):  # head first, as a radiologist scrolls
        tile = np.asarray(Image.fromarray(overlay(volume[z], labels[z], intensity)).resize((w, h)))
        r, c = divmod(n, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return sheet


def involvement_plot(per_slice: list[float]) -> bytes:
    """PNG bytes: % of lung involved on each slice, from the bases (left) to the apex (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6), dpi=100)
    ax.fill_between(range(len(per_slice)), per_slice, color=np.asarray(COLOURS[ABNORMAL]) / 255, alpha=0.6)
    ax.plot(per_slice, color="darkred", lw=1)
    ax.set_xlabel("slice (feet \u2192 head)")
    ax.set_ylabel("lung involved (%)")
    ax.set_ylim(0, max(5.0, max(per_slice, default=0) * 1.15))
    ax.grid(alpha=0.3)
    return figure_png(fig)


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes, the figure closed (every plot of the reports)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
