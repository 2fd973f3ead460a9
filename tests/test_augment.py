"""Training augmentation, on slices built in code: reproducible, geometry-consistent, masked last."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from covseg.data.augment import Augment, as_user_picture, dense_at_wall, resampled


def _slice():
    """A 96 x 96 enhanced slice: two 'lungs' (label 2) with a 'lesion' (label 1) in one."""
    rng = np.random.default_rng(3)
    image = rng.random((96, 96)).astype(np.float32) * 0.3 + 0.5
    lungs = np.zeros((96, 96), bool)
    lungs[20:76, 12:42] = lungs[20:76, 54:84] = True
    label = lungs.astype(np.uint8) * 2
    label[30:44, 20:34] = 1
    image[lungs] *= 0.4
    return image, lungs, label


def test_the_same_generator_state_gives_the_same_sample():
    aug = Augment(crop=64, zoom=(0.6, 1.6), rotate_deg=15, quarter_turns=True, reenhance=0.5)
    image, lungs, label = _slice()
    a = aug(image, lungs, label, np.random.default_rng([0, 7]))
    b = aug(image, lungs, label, np.random.default_rng([0, 7]))
    c = aug(image, lungs, label, np.random.default_rng([0, 8]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_zoom_scales_areas_and_masks_after_the_transform():
    image, lungs, label = _slice()
    out_aug = Augment(crop=None, flips=False, zoom=(0.6, 0.6), jitter=False)
    out, lab, _ = out_aug(image, lungs, label, np.random.default_rng(0))
    ratio = np.count_nonzero(lab) / np.count_nonzero(label)
    assert abs(ratio - 0.36) < 0.03  # zoomed out: every lung pixel stays in the frame
    assert (out[lab == 0] == 0).all()  # masked after the transform: nothing outside the lungs
    in_aug = Augment(crop=None, flips=False, zoom=(1.5, 1.5), jitter=False)
    _, lab, _ = in_aug(image, lungs, label, np.random.default_rng(0))
    lesion_ratio = np.count_nonzero(lab == 1) / np.count_nonzero(label == 1)
    assert abs(lesion_ratio - 2.25) < 0.3  # zoomed in: the lesion, inside the frame, grows 1.5^2


def test_quarter_turns_turn_image_and_labels_together():
    image, lungs, label = _slice()
    aug = Augment(crop=None, flips=False, quarter_turns=True, jitter=False, mask_lungs=False)
    seen = set()
    for seed in range(12):
        out, lab, _ = aug(image, lungs, label, np.random.default_rng(seed))
        turns = [k for k in range(4) if np.array_equal(lab, np.rot90(label, k))]
        assert turns and np.array_equal(out, np.rot90(image, turns[0]))
        seen.add(turns[0])
    assert len(seen) >= 3


def test_a_teachers_map_moves_with_the_labels_and_changes_no_draw():
    """Distillation's soft targets: turned, flipped, zoomed and cropped exactly as the labels,
    and the sample drawn is the one drawn without them (a paired comparison stays paired)."""
    image, lungs, label = _slice()
    soft = np.stack([(label == k).astype(np.float32) * 5.0 for k in range(3)])
    aug = Augment(crop=64, zoom=(0.8, 1.25), rotate_deg=10, quarter_turns=True, jitter=True)
    for seed in range(6):
        with_soft = aug(image, lungs, label, np.random.default_rng(seed), soft)
        without = aug(image, lungs, label, np.random.default_rng(seed))
        assert np.array_equal(with_soft[0], without[0]) and np.array_equal(with_soft[1], without[1])
        assert without[2] is None and with_soft[2].shape == (3, 64, 64)
        agree = with_soft[2].argmax(0) == with_soft[1]
        assert agree.mean() > 0.97  # bilinear against nearest: only edge pixels may differ


def test_user_picture_path_enhances_again_within_range():
    image, lungs, _ = _slice()
    out = as_user_picture(image, lungs, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.shape == image.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(out, image, atol=0.02)


def test_resampled_picture_keeps_its_grid_and_loses_detail():
    image, _, _ = _slice()
    for factor in (0.6, 1.6):
        out = resampled(image, factor)
        assert out.shape == image.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert abs(float(out.mean()) - float(image.mean())) < 0.02  # the same picture ...
        assert np.abs(np.diff(out, axis=1)).mean() < np.abs(np.diff(image, axis=1)).mean()  # ... blurred
    np.testing.assert_allclose(resampled(image, 1.0), image, atol=1e-6)


def test_consolidation_painted_at_the_wall_stays_inside_the_lungs_and_is_labelled():
    image, lungs, label = _slice()
    lung_level = float(np.median(image[lungs]))
    edge = lungs & ~ndi.binary_erosion(lungs)
    for seed in range(20):  # the lungs as bytes, as the training set holds them
        out, lab = dense_at_wall(image, lungs.astype(np.uint8), label, np.random.default_rng(seed))
        changed = np.abs(out - image) > 1e-6
        assert changed.any() and not changed[~lungs].any()  # painted inside the lungs only
        painted = (lab == 1) & (label != 1)
        assert painted.any() and lungs[painted].all()  # labelled abnormal: lung to a lung model
        assert np.median(out[painted]) > lung_level + 0.1  # the wall's grey, not the lung's
        assert (painted & edge).any()  # against the lungs' edge
    aug = Augment(crop=None, flips=False, dense_wall=1.0, jitter=False, mask_lungs=False)
    a = aug(image, lungs, label, np.random.default_rng([0, 3]))
    b = aug(image, lungs, label, np.random.default_rng([0, 3]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert ((a[1] == 1) & (label == 2)).any()
