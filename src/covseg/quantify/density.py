"""Lung density on HU scans: what quantitative-CT studies of COVID-19 report beside a lesion mask.

Bands (HU, lower bound inclusive), the defaults and their sources:
- hyperinflated  < -950: emphysema-like (the usual -950 HU emphysema threshold);
- well aerated   -950..-700: Colombi et al., Radiology 2020, whose software-measured share of
  well-aerated lung under 71 % predicted ICU admission or death;
- poorly aerated -700..-100: ground glass, hazier lung;
- non aerated    -100..+100: consolidation, effusion (the non-aerated compartment of
  Gattinoni's quantitative CT of lung injury);
- dense          >= +100: calcification, contrast-filled vessels.
Counted from a per-slice histogram, so memory stays flat however long the scan.
"""
from __future__ import annotations

import numpy as np

from covseg.labels import ABNORMAL, LEFT, RIGHT
from covseg.lungs.box import mask_box

BANDS: tuple[tuple[str, float, float], ...] = (
    ("hyperinflated", -np.inf, -950.0),
    ("well_aerated", -950.0, -700.0),
    ("poorly_aerated", -700.0, -100.0),
    ("non_aerated", -100.0, 100.0),
    ("dense", 100.0, np.inf),
)
HIST_RANGE = (-1024, 200)  # the histogram drawn in the report; values outside go to its ends


def _band_index(hu: np.ndarray) -> np.ndarray:
    """Each value's band: how many lower bounds it reaches (one comparison per edge, several
    times faster than a search)."""
    band = np.zeros(hu.shape, np.uint8)
    for _, low, _ in BANDS[1:]:
        band += hu >= low
    return band


def density_counts(hu: np.ndarray, lung_sides: np.ndarray, labels: np.ndarray, chunk: int = 16
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(side, band) voxel counts, (side, band) counts of voxels called abnormal, the lungs' HU
    histogram (one bin per HU over HIST_RANGE) and the lungs' HU sum (for the mean).

    Read within the lungs' bounding box, `chunk` slices at a time, so memory stays flat however
    long the scan."""
    n_bands = len(BANDS)
    counts = np.zeros((3, n_bands), np.int64)
    abnormal = np.zeros((3, n_bands), np.int64)
    hist = np.zeros(HIST_RANGE[1] - HIST_RANGE[0] + 1, np.int64)
    hu_sum = 0.0
    box = mask_box(lung_sides)
    if box is None:
        return counts, abnormal, hist, hu_sum
    slices, rows, cols = box
    for z0 in range(slices.start, slices.stop, chunk):
        part = (slice(z0, min(z0 + chunk, slices.stop)), rows, cols)
        inside = lung_sides[part] > 0
        values = hu[part][inside]
        code = lung_sides[part][inside].astype(np.int64) * n_bands + _band_index(values)
        counts += np.bincount(code, minlength=3 * n_bands).reshape(3, n_bands)
        sick = labels[part][inside] == ABNORMAL
        abnormal += np.bincount(code[sick], minlength=3 * n_bands).reshape(3, n_bands)
        binned = np.clip(np.rint(values), *HIST_RANGE).astype(np.int64) - HIST_RANGE[0]
        hist += np.bincount(binned, minlength=hist.size)
        hu_sum += float(values.sum(dtype=np.float64))
    return counts, abnormal, hist, hu_sum


def quantify_density(hu: np.ndarray, lung_sides: np.ndarray, labels: np.ndarray,
                     voxel_ml: float) -> dict:
    """Volume and % of lung per HU band, per lung and overall; mean lung density; histogram."""
    counts, abnormal, hist, hu_sum = density_counts(hu, lung_sides, labels)

    def describe(rows: np.ndarray, sick: np.ndarray) -> dict:
        total = int(rows.sum())
        bands = {name: {"ml": round(int(n) * voxel_ml, 2),
                        "percent": round(100.0 * int(n) / total, 2) if total else 0.0,
                        "called_abnormal_ml": round(int(s) * voxel_ml, 2)}
                 for (name, _, _), n, s in zip(BANDS, rows, sick)}
        return {"bands": bands}

    out = describe(counts[1:].sum(axis=0), abnormal[1:].sum(axis=0))
    n = int(counts[1:].sum())
    out["mean_lung_hu"] = round(hu_sum / n, 1) if n else None
    out["lungs"] = {name: describe(counts[side], abnormal[side])
                    for name, side in (("right", RIGHT), ("left", LEFT))}
    out["band_edges_hu"] = {name: [None if np.isinf(lo) else lo, None if np.isinf(hi) else hi]
                            for name, lo, hi in BANDS}
    out["histogram"] = {"first_hu": HIST_RANGE[0], "counts": _coarse(hist, 8)}
    return out


def _coarse(hist: np.ndarray, width: int) -> list[int]:
    """The histogram in bins of `width` HU: small enough for report.json, fine enough to plot."""
    pad = (-hist.size) % width
    return np.pad(hist, (0, pad)).reshape(-1, width).sum(axis=1).astype(int).tolist()
