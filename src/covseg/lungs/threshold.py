"""Classical lung extraction from HU: air threshold, outside air and airways removed, lungs split.

The paper notes that a simple HU window extracts the lungs well enough for Anam-Net. Steps:
1. voxels below -320 HU are air or aerated lung;
2. air connected to the in-plane border of the scan is outside the body and dropped;
3. pockets of pure air (median below -950 HU: bowel and stomach gas) and pockets whose largest
   axial section stays under 10 cm^2 (smaller bowel gas) are dropped, and the largest remaining
   components are the lungs, whose parenchyma sits around -850 HU;
4. the trachea and main bronchi are traced down from the top slice and removed;
5. the lungs are split into right and left at the thinnest column near the midline;
6. each lung is closed and hole-filled slice by slice, so vessels and dense lesions inside it
   stay in the lung mask, and dense regions biting into it from the chest wall (pleural-based
   consolidation, effusion) are taken in from its convex hull (`pleural_bites`).

Output labels: 0 none, 1 right lung, 2 left lung (patient's right is on the image's left, low x).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from covseg.labels import LEFT, RIGHT

AIR_HU = -320.0
AIRWAY_HU = -900.0
PURE_AIR_HU = -950.0
MIN_LUNG_SECTION_MM2 = 1000.0  # 10 cm^2: the smallest largest-section a lung may have
BITE_MIN_MM = 3.5  # a pleural bite is thicker than the sliver a rib leaves (covseg.lungs: pleural_bites)
BITE_MAX_SHARE = 0.3  # and at most this share of its lung slice
BONE_HU = 200.0
BRIDGE_MM = 10.0


def _touching_border(mask: np.ndarray) -> np.ndarray:
    """The components of a 2-D or 3-D mask that reach the first or last row or column of a plane.

    A lookup table over the labels, so no per-component masks are made.
    """
    lab, n = ndi.label(mask)
    touching = np.zeros(n + 1, dtype=bool)
    touching[lab[..., [0, -1], :]] = True
    touching[lab[..., :, [0, -1]]] = True
    touching[0] = False
    return touching[lab]


def largest_components(mask: np.ndarray, keep_ratio: float = 0.15) -> np.ndarray:
    """The largest component and every other at least `keep_ratio` of its size."""
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return (sizes >= keep_ratio * sizes.max())[lab]


def _lung_candidates(mask: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float],
                     keep_ratio: float = 0.15) -> np.ndarray:
    """The air components that are lung, by density and size (one labelling for every test).

    - Gas in the bowel or stomach is not lung: a component whose median is below -950 HU is
      dropped. median < -950 HU  <=>  more than half its voxels are below -950 HU, which a
      bincount gives far faster than a per-component median.
    - A lung is large in cross-section: somewhere in the scan a lung's axial section exceeds
      10 cm^2, where gas pockets that pass the density test stay far smaller (on real_ct's
      abdomen every such pocket is under 4 cm^2, its lung bases reach 38-59 cm^2).
    - Of the rest, the largest and every other at least `keep_ratio` of its size are kept.
    """
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    size = np.bincount(lab.ravel(), minlength=n + 1)
    pure = np.bincount(lab[hu < PURE_AIR_HU], minlength=n + 1)
    nz = lab.shape[0]
    per_slice = np.bincount((lab + (n + 1) * np.arange(nz)[:, None, None]).ravel(),
                            minlength=(n + 1) * nz).reshape(nz, n + 1)
    section_mm2 = per_slice.max(axis=0) * spacing[1] * spacing[2]
    keep = (pure <= 0.5 * size) & (section_mm2 >= MIN_LUNG_SECTION_MM2)
    keep[0] = False
    if not keep.any():
        return np.zeros_like(mask)
    keep &= size >= keep_ratio * size[keep].max()
    return keep[lab]


def _airways(lungs: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Trace the trachea down from the top slice, slice by slice, until it opens into the lungs."""
    pixel_area = spacing[1] * spacing[2]
    max_area = 600.0 / pixel_area  # trachea and main bronchi stay under ~6 cm^2 a slice
    lumen = lungs & (hu < AIRWAY_HU)
    airway = np.zeros_like(lungs)
    previous = None
    for z in range(lungs.shape[0] - 1, -1, -1):
        lab, n = ndi.label(lumen[z])
        if n == 0:
            if previous is not None:
                break
            continue
        if previous is None:
            sizes = np.bincount(lab.ravel())[1:]
            cy, cx = np.array(lungs.shape[1:]) / 2
            centres = ndi.center_of_mass(lumen[z], lab, range(1, n + 1))
            small = [i + 1 for i, s in enumerate(sizes) if s <= max_area
                     and abs(centres[i][1] - cx) < lungs.shape[2] * 0.15]
            if not small or sizes.max() > 3 * max_area:
                return airway  # the scan starts below the trachea or inside the lungs
            current = np.isin(lab, small)
        else:
            ids = np.unique(lab[previous])
            current = np.isin(lab, ids[ids > 0])
            if current.sum() > max_area * 1.5:
                break  # opened into the lung parenchyma
        if not current.any():
            break
        airway[z] = current
        previous = ndi.binary_dilation(current, iterations=2)
    traced = np.nonzero(airway.any(axis=(1, 2)))[0]  # dilate in-plane, on those slices only
    if traced.size:
        airway[traced] = ndi.binary_dilation(airway[traced], structure=np.ones((1, 3, 3), bool))
    return airway


def _mean_x(mask: np.ndarray) -> float:
    """Mean x index of a 3-D mask's voxels, from its column counts (no coordinate arrays)."""
    cols = mask.sum(axis=(0, 1))
    return float((cols * np.arange(cols.size)).sum() / cols.sum())


def split_left_right(lungs: np.ndarray) -> np.ndarray:
    """Label right (low x) and left lung; joined lungs are cut at the thinnest central column."""
    lab, n = ndi.label(lungs)
    out = np.zeros(lungs.shape, dtype=np.uint8)
    if n == 0:
        return out
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    if n >= 2 and sizes[order[1]] > 0.2 * sizes[order[0]]:
        a, b = order[0] + 1, order[1] + 1
        xa, xb = _mean_x(lab == a), _mean_x(lab == b)
        right, left = (a, b) if xa < xb else (b, a)
        out[lab == right] = RIGHT
        out[lab == left] = LEFT
        rest = lungs & (out == 0)
        if rest.any():  # small pieces go to the nearer lung
            xs = np.nonzero(rest)[2]
            mid = (_mean_x(out == RIGHT) + _mean_x(out == LEFT)) / 2
            out[rest] = np.where(xs < mid, RIGHT, LEFT)
        return out
    nx = lungs.shape[2]
    for z in range(lungs.shape[0]):
        if not lungs[z].any():
            continue
        cols = lungs[z].sum(axis=0)
        lo, hi = int(nx * 0.35), int(nx * 0.65)
        cut = lo + int(np.argmin(cols[lo:hi]))
        out[z, :, :cut][lungs[z, :, :cut]] = RIGHT
        out[z, :, cut:][lungs[z, :, cut:]] = LEFT
    return out


def _close_plane(mask: np.ndarray, radius: float) -> np.ndarray:
    """Morphological closing with a disk, by distance transforms (cost independent of radius)."""
    grown = ndi.distance_transform_edt(~mask) <= radius
    return ndi.distance_transform_edt(grown) > radius


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background not connected to the border becomes foreground.

    Same result as ndi.binary_fill_holes, by one labelling instead of dilating to convergence.
    """
    return mask | ~_touching_border(~mask)


def pleural_bites(lung: np.ndarray, hu: np.ndarray, lateral: int, pixel_mm: float) -> np.ndarray:
    """The dense regions that bite into a lung slice from the chest wall (pleural-based
    consolidation, effusion), which the air threshold leaves out and no closing can bridge, as
    they open onto the wall.

    A lung's costal surface follows the inside of the ribs and is convex, so what its convex
    hull adds on the lateral side is such a bite, or a thin sliver between ribs. A piece of the
    hull is taken in when it lies lateral of the lung's centre (`lateral` -1: towards low x, the
    right lung; +1 the left), is thicker than a sliver (an inscribed radius of at least
    `BITE_MIN_MM`), at most `BITE_MAX_SHARE` of the lung slice (the liver or spleen dome under a
    basal crescent is larger) and not bone. Medial pieces (heart, hilum, spine) are never taken.
    """
    import cv2

    rows = np.flatnonzero(lung.any(axis=1))  # a set's hull is the hull of each row's two ends
    first = lung[rows].argmax(axis=1)
    last = lung.shape[1] - 1 - lung[rows, ::-1].argmax(axis=1)
    points = np.stack([np.concatenate([first, last]), np.concatenate([rows, rows])], axis=1)
    extra = np.zeros(lung.shape, np.uint8)
    cv2.fillConvexPoly(extra, cv2.convexHull(points.astype(np.int32)), 1)
    extra[lung] = 0
    n, lab, stats, centroids = cv2.connectedComponentsWithStats(extra, connectivity=4)
    keep = np.zeros(n, dtype=bool)
    if n == 1:
        return keep[lab]
    area = stats[1:, cv2.CC_STAT_AREA]
    cols = np.nonzero(lung)[1].mean()
    radius_px = BITE_MIN_MM / pixel_mm
    candidates = ((centroids[1:, 0] - cols) * lateral > 0) \
        & (area <= BITE_MAX_SHARE * np.count_nonzero(lung)) & (area >= np.pi * radius_px ** 2)
    for i in np.flatnonzero(candidates) + 1:  # few: most of the hull's extra are thin slivers
        x, y, w, h = stats[i, :4]
        piece = np.pad(lab[y:y + h, x:x + w] == i, 1)
        dense = hu[y:y + h, x:x + w][piece[1:-1, 1:-1]]
        keep[i] = (ndi.distance_transform_edt(piece).max() >= radius_px
                   and (dense > BONE_HU).mean() < 0.1)
    return keep[lab]


def close_and_fill(side: np.ndarray, body: np.ndarray, radius_px: int,
                   hu: np.ndarray | None = None, lateral: int = 0,
                   pixel_mm: float = 1.0) -> np.ndarray:
    """Per slice: close concave bites, take in pleural bites (with `hu` and the lung's
    `lateral` side) and fill holes (vessels, nodules).

    Each slice is worked on in its lung's bounding box, grown by the radius.
    """
    out = np.zeros_like(side)
    r = max(1, int(radius_px))
    for z in np.nonzero(side.any(axis=(1, 2)))[0]:
        ys, xs = np.nonzero(side[z])
        y0, x0, y1, x1 = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
        box = np.pad(side[z, y0:y1, x0:x1], r + 1)
        closed = _close_plane(box, r)[r + 1:-r - 1, r + 1:-r - 1]
        if hu is not None:
            closed = closed | pleural_bites(closed, hu[z, y0:y1, x0:x1], lateral, pixel_mm)
        filled = _fill_holes(closed)
        h, w = filled.shape
        out[z, y0:y0 + h, x0:x0 + w] = filled & body[z, y0:y0 + h, x0:x0 + w]
    return out


def bridge_slices(side: np.ndarray, hu: np.ndarray, body: np.ndarray, slice_mm: float,
                  lateral: int) -> np.ndarray:
    """Dense disease on the costal side that a slice's own rules cannot tell from the chest
    wall, taken in where the same lung lies above and below it in the column.

    A closing along z alone: a gap of at most BRIDGE_MM between lung above and lung below, in
    the body, not bone and lateral of the lung slice's centre (`lateral` as in pleural_bites),
    is lung. Medial gaps are left: the heart's rounded edge can have lung above and below it.
    """
    most = int(BRIDGE_MM // slice_mm)  # the longest gap bridged, in slices
    zs = np.flatnonzero(side.any(axis=(1, 2)))
    if most < 1 or len(zs) < 3:
        return side
    ys, xs = np.nonzero(side[zs[0]:zs[-1] + 1].any(axis=0))
    box = (slice(zs[0], zs[-1] + 1), slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    lung = side[box]
    z = np.arange(lung.shape[0], dtype=np.int32)[:, None, None]
    far = np.int32(lung.shape[0] + most + 2)
    below = np.maximum.accumulate(np.where(lung, z, -far), axis=0)  # the last lung at or below
    above = np.minimum.accumulate(np.where(lung, z, far)[::-1], axis=0)[::-1]  # the next above
    gaps = np.zeros_like(side)
    gaps[box] = ~lung & (above - below - 1 <= most) & body[box] & (hu[box] < BONE_HU)
    x = np.arange(side.shape[2])
    for k in np.flatnonzero(gaps.any(axis=(1, 2))):
        per_col = np.count_nonzero(side[k], axis=0)
        count = per_col.sum()
        centre = (per_col @ x) / count if count else np.inf * -lateral
        gaps[k] &= ((x - centre) * lateral > 0)[None, :]
    return side | gaps


def extract_lungs_hu(hu: np.ndarray, spacing: tuple[float, float, float],
                     closing_mm: float = 10.0) -> np.ndarray:
    """(z, y, x) HU volume -> (z, y, x) uint8 labels: 0 none, 1 right lung, 2 left lung."""
    low = hu < AIR_HU
    body = ~_touching_border(low)  # air around the patient reaches the edge of the slices
    lungs = _lung_candidates(low & body, hu, spacing)
    if not lungs.any():
        return np.zeros(hu.shape, dtype=np.uint8)
    lungs &= ~_airways(lungs, hu, spacing)
    lungs = largest_components(lungs, keep_ratio=0.05)
    sides = split_left_right(lungs)
    radius = int(round(closing_mm / spacing[2]))
    out = np.zeros(hu.shape, dtype=np.uint8)
    for label, lateral in ((RIGHT, -1), (LEFT, 1)):
        filled = close_and_fill(sides == label, body, radius, hu, lateral, spacing[2])
        filled = bridge_slices(filled, hu, body, spacing[0], lateral)
        out[filled & (out == 0)] = label
    return out
