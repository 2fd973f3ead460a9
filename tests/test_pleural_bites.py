"""Dense disease against the chest wall stays in the HU lung mask (issue 24, item 2; issue 15).

The air threshold stops at a pleural-based consolidation, and no closing bridges a bite that
opens onto the chest wall; the lung's convex hull does, on its costal side only.
"""
from __future__ import annotations

import numpy as np
import pytest

from covseg.demo.insert import insert, insertion_region
from covseg.lungs.threshold import bridge_slices, extract_lungs_hu, pleural_bites

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
    thickest slice: the lung mask holds > 90 % of it (17 % with the air threshold alone, 84 %
    with the hull's bites, all with the bridge between slices), lung volume within 1 %."""
    scan, lungs = chest
    region = insertion_region(lungs > 0, scan.spacing, "pleura", "round", 12)
    found = extract_lungs_hu(insert(scan.array, region, HU_CONSOLIDATION), scan.spacing)
    inside = ((found > 0) & region).sum() / region.sum()
    assert inside > 0.9, inside
    assert abs(int((found > 0).sum()) - int((lungs > 0).sum())) <= 0.01 * (lungs > 0).sum()


def test_a_costal_gap_between_lung_above_and_below_is_bridged_and_a_medial_one_is_not():
    """Consolidation filling a right lung's lateral part over a few slices, with aerated lung
    above and below it (3 mm slices): taken in on the costal side, never medially (the heart's
    rounded edge can have lung above and below it) and never bone."""
    hu, _ = _slice(bite=False)
    side = np.repeat((hu < -320)[None], 9, axis=0)
    lateral_gap = np.zeros_like(side)
    lateral_gap[3:6, 80:120, 25:45] = True  # lateral of the lung's centre (x 70): costal
    medial_gap = np.zeros_like(side)
    medial_gap[3:6, 80:120, 85:100] = True
    broken = side & ~lateral_gap & ~medial_gap
    vol = np.repeat(hu[None], 9, axis=0)
    vol[lateral_gap | medial_gap] = HU_CONSOLIDATION
    body = np.ones_like(side)
    out = bridge_slices(broken, vol, body, slice_mm=3.0, lateral=-1)
    assert out[lateral_gap & side].all()
    assert not out[medial_gap & side].any()
    vol[lateral_gap] = 700.0  # bone is never lung
    assert not bridge_slices(broken, vol, body, slice_mm=3.0, lateral=-1)[lateral_gap & side].any()
    vol[lateral_gap] = HU_CONSOLIDATION
    long_gap = lateral_gap.copy()
    long_gap[2] = long_gap[3]  # four 3 mm slices: 12 mm, more than BRIDGE_MM
    too_long = side & ~long_gap
    assert bridge_slices(too_long, vol, body, 3.0, -1).sum() == too_long.sum()
