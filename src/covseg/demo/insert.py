"""Synthetic lesions of known volume inside a real CT's lungs (issue 24's known-volume table).

The tests and `benchmarks/inserted_lesions.py` build the same insertions from here: a ball deep
in the lungs or on the right lung's lateral chest wall, round or patchy (blotches of smoothed
noise cut at their median), filled with a chosen HU plus CT-like noise.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def ball(shape: tuple[int, ...], centre, radius_mm: float, spacing) -> np.ndarray:
    """Voxels within `radius_mm` of `centre` (voxel indices) on a grid of `spacing` mm."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return d2 < radius_mm ** 2


def insertion_region(lungs: np.ndarray, spacing: tuple[float, float, float], where: str,
                     shape: str, radius_mm: float, inside_scan: bool = False) -> np.ndarray:
    """A region inside the boolean `lungs`: "deep" in them, or on the "pleura" where the right
    lung (low x) is thickest, walked out to its lateral chest wall; "round" or "patchy".

    `inside_scan`: the pleural slice is chosen at least a radius from the scan's first and last
    slice, so the ball is not cut by the end of the scan.
    """
    depth = ndi.distance_transform_edt(lungs, sampling=spacing)
    if where == "deep":
        candidates = np.argwhere(depth > radius_mm)
        centre = candidates[len(candidates) // 2]
    else:
        half = lungs.shape[2] // 2
        area = lungs[:, :, :half].sum(axis=(1, 2))
        if inside_scan:
            margin = int(np.ceil(radius_mm / spacing[0]))
            area[:margin] = 0
            area[len(area) - margin:] = 0
        z = int(np.argmax(area))
        plane = depth[z, :, :half]
        y, x = np.unravel_index(np.argmax(plane), plane.shape)
        edge = np.nonzero(lungs[z, y, :x])[0].min()
        centre = np.array([z, y, edge])
    region = ball(lungs.shape, centre, radius_mm, spacing) & lungs
    if shape == "patchy":
        noise = ndi.gaussian_filter(np.random.default_rng(1).normal(size=lungs.shape), 1.2)
        region &= noise > np.median(noise[region])
    return region


def insert(hu: np.ndarray, region: np.ndarray, hu_value: float, noise_hu: float = 25.0,
           seed: int = 0) -> np.ndarray:
    """A copy of `hu` with `region` set to `hu_value` plus Gaussian noise."""
    out = hu.copy()
    out[region] = hu_value + np.random.default_rng(seed).normal(0, noise_hu, int(region.sum()))
    return out
