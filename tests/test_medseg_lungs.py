"""MedSeg's training pictures for the models: pseudo lungs that hold the disease and not the
airway, a held-out part kept out of training, framing as each model sees a picture, and the join
that gives them their share of the samples."""
from __future__ import annotations

import numpy as np
import pytest

from covseg.data.datasets import training_data
from covseg.data.medseg import lung_model_split, pseudo_lungs
from covseg.errors import InputError
from covseg.train.config import DataConfig


def _picture() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lung-window picture: grey body, two dark lungs, a dark trachea between them, and a
    bright consolidation against the right lung's wall, labelled as a lesion."""
    yy, xx = np.mgrid[:300, :300]
    image = np.full((300, 300), 170.0)
    right = ((yy - 150) / 100) ** 2 + ((xx - 85) / 55) ** 2 < 1
    left = ((yy - 150) / 100) ** 2 + ((xx - 215) / 55) ** 2 < 1
    image[right | left] = 30.0
    trachea = (yy - 80) ** 2 + (xx - 150) ** 2 < 8 ** 2
    image[trachea] = 5.0
    lesion = right & (xx < 55)
    image[lesion] = 200.0  # as bright as soft tissue: the dark-lung extractor cannot see it
    noise = np.random.default_rng(0).normal(0, 3, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), lesion, right | left


def test_pseudo_lungs_hold_the_lesion_and_leave_the_trachea_out():
    image, lesion, truth = _picture()
    lungs = pseudo_lungs(image, lesion)
    assert lungs[lesion].all()
    assert not lungs[(np.mgrid[:300, :300][0] - 80) ** 2 + (np.mgrid[:300, :300][1] - 150) ** 2 < 36].any()
    dice = 2 * (lungs & truth).sum() / (lungs.sum() + truth.sum())
    assert dice > 0.97


def test_held_out_pictures_are_never_trained_on():
    train, held = lung_model_split("train"), lung_model_split("held_out")
    assert len(train) == 40 and len(held) == 10
    assert not set(train) & set(held)
    assert sorted(train + held) == list(range(50))


def test_only_medseg_can_join_at_a_share_below_one():
    """Checked when the config is read, before any data is loaded."""
    with pytest.raises(InputError, match="only medseg100"):
        DataConfig(extra="ma20")
    with pytest.raises(InputError, match="extra_share"):
        DataConfig(extra="medseg100", extra_share=1.0)


def test_lesion_pictures_are_framed_as_the_pipeline_frames_them(data_dir):
    """For the lesion model a picture is zoomed so its lungs span what ma20's do (172 px)."""
    from covseg.data.medseg import load_medseg100_pictures
    from covseg.infer.framing import LUNG_WIDTH_PX

    pictures = load_medseg100_pictures("held_out", "lesions", data_dir)
    widths = [np.ptp(np.nonzero(p)[1]) + 1 for p in pictures.lungs]
    assert abs(np.median(widths) - LUNG_WIDTH_PX) <= 3
    assert ((pictures.labels == 1) <= pictures.lungs).all() and (pictures.labels == 1).any()


def test_extra_set_gets_its_share(data_dir):
    data = DataConfig(dataset="ma20", train_folds=[1], target="lungs", extra="medseg100",
                      extra_share=0.25, root=str(data_dir))
    plain = DataConfig(dataset="ma20", train_folds=[1], target="lungs", root=str(data_dir))
    images, lungs, labels = training_data(data, 0.5)
    n = len(training_data(plain, 0.5)[0])
    extra = len(images) - n
    assert extra % 40 == 0 and extra > 0
    assert abs(extra / len(images) - 0.25) < 0.05
    assert images.shape[1:] == labels.shape[1:] == (128, 128)
    assert set(np.unique(labels[n:])) <= {0, 1, 2} and (labels[n:] == 1).any()


def test_lung_target_weighs_the_lesion_pixels():
    """Lung = label > 0 for the base loss; the lesion term adds the cross-entropy of exactly
    the abnormal pixels, so a model that leaves a lesion out of the lungs pays for it twice."""
    import torch

    from covseg.train.losses import build_loss

    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 2:6, 2:6] = 2  # normal lung
    labels[0, 2:4, 2:4] = 1  # a lesion in it
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 1] = torch.where(labels[0] == 2, 4.0, -4.0)  # lesion called "not lung"
    plain = build_loss("ce", labels.numpy().astype(np.uint8), 2, "lungs")
    weighted = build_loss("ce", labels.numpy().astype(np.uint8), 2, "lungs", lesion_weight=2.0)
    lung = (labels > 0).long()
    assert torch.isclose(plain(logits, labels), torch.nn.functional.cross_entropy(logits, lung))
    lesion_ce = torch.nn.functional.cross_entropy(logits, lung, reduction="none")[labels == 1].mean()
    assert torch.isclose(weighted(logits, labels), plain(logits, labels) + 2.0 * lesion_ce)
    assert lesion_ce > 4.0  # the lesion pixels are what the term measures


def test_lesion_weight_needs_the_lung_target():
    from covseg.train.config import config_from_dict

    with pytest.raises(InputError, match="lesion_weight"):
        config_from_dict({"lesion_weight": 1.0})
