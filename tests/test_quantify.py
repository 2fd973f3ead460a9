"""Volumes, involvement and grades from label maps whose answers are known by construction."""
import numpy as np
import pytest

from covseg.quantify import quantify, severity_grade
from covseg.quantify.volumes import slice_counts


def _labels(shape=(4, 10, 10)):
    sides = np.zeros(shape, np.uint8)
    sides[:, :, :5] = 1  # right lung: 50 voxels a slice
    sides[:, :, 5:] = 2  # left lung
    labels = np.where(sides > 0, 2, 0).astype(np.uint8)
    labels[1, :, :5] = 1  # one whole right-lung slice is lesion: 50 voxels
    labels[2, 0, 5:] = 1  # 5 left-lung voxels
    return labels, sides


def test_volumes_and_involvement_by_lung():
    labels, sides = _labels()
    q = quantify(labels, sides, voxel_ml=0.5)
    assert q["lung_ml"] == 400 * 0.5
    assert q["lesion_ml"] == 55 * 0.5
    assert q["involvement_percent"] == round(100 * 55 / 400, 2)
    assert q["lungs"]["right"] == {"lung_ml": 100.0, "lesion_ml": 25.0, "involvement_percent": 25.0}
    assert q["lungs"]["left"]["lesion_ml"] == 2.5
    assert q["per_slice_involvement_percent"] == [0.0, 50.0, 5.0, 0.0]
    assert q["severity"]["grade"] == "CT-1"


def test_counts_table_matches_masks():
    rng = np.random.default_rng(0)
    sides = rng.integers(0, 3, (3, 20, 30)).astype(np.uint8)
    labels = np.where(sides > 0, rng.integers(1, 3, sides.shape), 0).astype(np.uint8)
    counts = slice_counts(labels, sides)
    for lab in range(3):
        for side in (1, 2):
            assert counts[:, lab, side].sum() == ((labels == lab) & (sides == side)).sum()
    assert not counts[:, :, 0].any()  # outside the lungs is not counted


@pytest.mark.parametrize("percent,grade", [(0, "CT-0"), (0.01, "CT-0"), (0.25, "CT-0"), (0.26, "CT-1"),
                                           (24.99, "CT-1"), (25, "CT-2"),
                                           (50, "CT-3"), (74.9, "CT-3"), (75, "CT-4"), (100, "CT-4")])
def test_severity_grades(percent, grade):
    assert severity_grade(percent) == grade


def test_a_lesion_free_phantom_is_graded_ct0_with_its_rule(tmp_path):
    """The false-positive level the CT-0 rule rests on, measured again: healthy lungs, no lesion."""
    import covseg
    from covseg.demo import save_phantom

    save_phantom(covseg.make_phantom(shape=(32, 128, 128), spacing=(5.0, 2.8, 2.8), seed=1,
                                     with_lesions=False), tmp_path / "healthy.nii.gz")
    q = covseg.segment(tmp_path / "healthy.nii.gz", pictures=False).quantification
    assert q.involvement_percent <= 0.25
    assert q.severity.grade == "CT-0" and q.severity.rule
