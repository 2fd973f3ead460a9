"""The report: its typed model (report.model), the pictures and the HTML page."""
from __future__ import annotations

import numpy as np

from covseg.io.scan import Scan
from covseg.report.figures import involvement_plot, montage, most_affected, overlay, png_bytes
from covseg.report.html import render_html
from covseg.report.model import Quantification, Report


OVERLAYS = 3


def render_pictures(scan: Scan, labels: np.ndarray, numbers: Quantification) -> dict[str, bytes]:
    """PNG bytes by name: 'overlay' (the most affected slice; for volumes also 'overlay_2',
    'overlay_3', the next most affected), and for volumes 'montage' and 'profile'."""
    worst = most_affected(labels, OVERLAYS) or [int(np.argmax((labels > 0).sum(axis=(1, 2))))]
    pictures = {}
    for rank, z in enumerate(worst, start=1):
        name = "overlay" if rank == 1 else f"overlay_{rank}"
        pictures[name] = png_bytes(overlay(scan.array[z], labels[z], scan.intensity))
    if scan.is_volume:
        pictures["montage"] = png_bytes(montage(scan.array, labels, scan.intensity))
        pictures["profile"] = involvement_plot(numbers.per_slice_involvement_percent)
    return pictures


__all__ = ["Report", "render_html", "render_pictures"]
