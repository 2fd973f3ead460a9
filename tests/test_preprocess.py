"""The preprocessing contract and the lung helpers that were rewritten for speed."""
import numpy as np
from scipy import ndimage as ndi
from skimage.exposure import equalize_adapthist

from covseg.preprocess.contract import enhance, model_input
from covseg.preprocess.resample import resize_planes
from covseg.lungs.threshold import _fill_holes


def _hu_slice():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:128, :128]
    hu = np.where((y - 64) ** 2 + (x - 64) ** 2 < 55 ** 2, 40.0, -1000.0)
    hu[(y - 64) ** 2 + (x - 40) ** 2 < 15 ** 2] = -850.0
    return ndi.gaussian_filter(hu + rng.normal(0, 20, hu.shape), 1.5).astype(np.float32)


def test_enhance_is_the_repackers_clahe(real_ct):
    """OpenCV's CLAHE at clip 7 on 8 bits: the picture scikit-image's 7/256 gives, in [0, 1]."""
    from covseg.io import read_scan

    hu = read_scan(real_ct / "dicom_slices" / "0.dcm").array[0]
    ours = enhance(hu, "hu")
    assert ours.dtype == np.float32 and 0 <= ours.min() and ours.max() <= 1
    clipped = np.clip(hu, -1024, 2000)
    reference = equalize_adapthist((clipped - clipped.min()) / np.ptp(clipped), clip_limit=7 / 256)
    assert np.abs(ours - reference).mean() < 0.02
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.995


def test_model_input_is_zero_outside_the_lungs():
    hu = _hu_slice()
    lungs = np.zeros(hu.shape, bool)
    lungs[40:90, 20:60] = True
    x = model_input(hu, lungs, "hu")
    assert (x[~lungs] == 0).all() and x[lungs].max() > 0


def test_ma20_slices_are_only_scaled():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_allclose(enhance(img, "enhanced"), img / 255.0, rtol=1e-6)


def test_fill_holes_matches_scipy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = ndi.binary_opening(rng.random((50, 70)) > 0.45)
        np.testing.assert_array_equal(_fill_holes(mask), ndi.binary_fill_holes(mask))


def test_slab_resampling_equals_one_pass():
    """Slab-by-slab resampling (bounded memory) gives what resampling all slices at once gives."""
    import torch
    import torch.nn.functional as F

    vol = np.random.default_rng(2).normal(size=(70, 64, 48)).astype(np.float32)
    whole = F.interpolate(torch.from_numpy(vol)[:, None], size=(32, 24), mode="bilinear",
                          align_corners=False, antialias=True)[:, 0].numpy()
    np.testing.assert_allclose(resize_planes(vol, (32, 24)), whole, atol=1e-6)


def test_read_only_sources_resample_without_a_warning():
    import warnings

    volume = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    volume.flags.writeable = False  # as a decoded TIFF arrives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = resize_planes(volume, (20, 20))
    assert out.shape == (3, 20, 20)
