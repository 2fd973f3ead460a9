"""Dense disease against the chest wall stays in the HU lung mask (issue 24, item 2; issue 15).

The air threshold stops at a pleural-based consolidation, and no closing bridges a bite that
opens onto the chest wall; the lung's convex hull does, on its costal side only.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from covseg.labels import RIGHT
from covseg.lungs.threshold import extract_lungs_hu, pleural_bites

HU_WALL, HU_LUNG, HU_CONSOLIDATION = 40.0, -850.0, -20.0


def _slice(bite: bool) -> tuple[np.ndarray, np.ndarray]:
    """A right lung (a disc, low x) with a medial notch (the heart) and, optionally, a
    consolidation biting in from its lateral wall; HU and the air-threshold lung."""
    yy, xx = np.mgrid[:200, :200]
    lung = (yy - 100) ** 2 + (xx - 70) ** 2 < 50 ** 2
    lung &= ~((yy - 100) ** 2 + (xx - 125) ** 2 < 30 ** 2)  # heart notch on the medial side
    hu = np.where(lung, HU_LUNG, HU_WALL)
    disease = lung & ((yy - 100) ** 2 + (xx - 20) ** 2 < 15 ** 2)  # against the lateral wall
    if bite:
        hu[disease] = HU_CONSOLIDATION
    return hu, disease


def test_a_bite_from_the_chest_wall_is_taken_in_and_the_heart_is_not():
    hu, disease = _slice(bite=True)
    lung = hu < -320
    taken = pleural_bites(lung, hu, lateral=-1, pixel_mm=1.0)
    assert taken[disease].mean() > 0.8  # the hull's chord cuts off the wall's own curve (14 %)
    assert not taken[:, 100:].any()  # nothing on the medial side (heart notch)
    assert taken.sum() < 1.2 * disease.sum()


def test_a_lung_without_a_bite_is_left_as_it_is():
    hu, _ = _slice(bite=False)
    lung = hu < -320
    assert not pleural_bites(lung, hu, lateral=-1, pixel_mm=1.0).any()


def test_a_rib_sliver_and_bone_are_not_lung():
    hu, _ = _slice(bite=False)
    lung = hu < -320
    lung[95:105, 20:22] = False  # a 2 px sliver where a rib presses in
    hu[95:105, 20:22] = HU_WALL
    assert not pleural_bites(lung, hu, lateral=-1, pixel_mm=1.0)[95:105, 20:22].any()
    hu2, disease = _slice(bite=True)
    hu2[disease] = 700.0  # bone, not consolidation
    assert not pleural_bites(hu2 < -320, hu2, lateral=-1, pixel_mm=1.0).any()


@pytest.fixture(scope="module")
def chest(real_ct):
    import covseg

    scan = covseg.read_scan(real_ct / "example_ct.nii.gz")
    return scan, extract_lungs_hu(scan.array, scan.spacing)


def test_pleural_consolidation_in_real_ct_stays_in_the_lungs(chest):
    """real_ct with a 12 mm consolidation (-20 HU) on the lateral wall of the right lung's
    thickest slice: 84 % of it is inside the lung mask now (17 % before), lung volume within 1 %."""
    scan, lungs = chest
    right = lungs == RIGHT
    z = int(np.argmax(right.sum(axis=(1, 2))))
    depth = ndi.distance_transform_edt(right[z], sampling=scan.spacing[1:])
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    edge = np.nonzero(right[z, y, :x])[0].min()
    grids = np.ogrid[tuple(slice(0, n) for n in lungs.shape)]
    ball = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, (z, y, edge), scan.spacing)) < 12 ** 2
    region = ball & (lungs > 0)
    hu = scan.array.copy()
    hu[region] = HU_CONSOLIDATION + np.random.default_rng(0).normal(0, 25, int(region.sum()))
    found = extract_lungs_hu(hu, scan.spacing)
    inside = ((found > 0) & region).sum() / region.sum()
    assert inside > 0.8, inside
    assert abs(int((found > 0).sum()) - int((lungs > 0).sum())) <= 0.01 * (lungs > 0).sum()
