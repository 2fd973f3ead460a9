"""The model zoo: every network trains a step, Anam-Net matches the paper's size."""
from __future__ import annotations

import pytest
import torch

from covseg.errors import CovsegError
from covseg.models import available_models, build_model
from covseg.models.anamnet import AnamNet
from covseg.evaluate.profile import count_parameters, gmacs, model_table

ALL = available_models()


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_shape(name):
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.randn(2, 1, 64, 64)
    y = model(x)
    assert y.shape == (2, 3, 64, 64)
    y.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    reached = [g for g in grads if g is not None]
    # MONAI's U-Net++ keeps deep-supervision heads that a single-output forward does not use
    assert len(reached) >= 0.95 * len(grads)
    assert sum(float(g.abs().sum()) > 0 for g in reached) >= 0.9 * len(reached)


@pytest.mark.parametrize("name", ALL)
def test_every_network_takes_the_predictors_multiples_of_16(name):
    """covseg's predictor pads lung boxes to multiples of 16, not 32 (SegNet, encoder U-Nets)."""
    with torch.no_grad():
        assert build_model(name).eval()(torch.zeros(1, 1, 80, 48)).shape == (1, 3, 80, 48)


@pytest.mark.parametrize("name", ["anamnet", "enet", "lednet"])
def test_same_seed_same_output(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model(name).eval()
        with torch.no_grad():
            outs.append(model(torch.ones(1, 1, 32, 32)))
    assert torch.equal(outs[0], outs[1])


def test_anamnet_parameter_count_matches_paper():
    n = count_parameters(AnamNet())
    assert abs(n - 4.47e6) / 4.47e6 < 0.02
    assert count_parameters(AnamNet(shared_decoder_ad=False)) == 4_630_147
    assert count_parameters(AnamNet(ad_blocks=False)) < n


def test_anamnet_any_size_divisible_by_16_and_any_batch():
    model = AnamNet().eval()
    with torch.no_grad():
        for shape in [(1, 1, 16, 16), (3, 1, 48, 80), (5, 1, 112, 96)]:
            assert model(torch.zeros(shape)).shape == (shape[0], 3, *shape[2:])


def test_anamnet_costs_84_gmac_per_512_slice():
    # conv cost scales with pixels: 128x128 x 16 = one 512x512 slice
    assert 80 < gmacs(AnamNet(), size=128) * 16 < 88


def test_ad_block_squeezes_to_a_quarter():
    block = AnamNet().enc_ad[2]
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (256, 64, (1, 1)), (64, 64, (3, 3)), (64, 256, (1, 1))]


def test_unknown_model_is_a_clear_error():
    with pytest.raises(CovsegError, match="unknown model 'vnet'.*anamnet"):
        build_model("vnet")


def test_model_table_lists_paper_figures():
    table = model_table(["anamnet", "enet"], size=64, latency=False)
    assert "4.47" in table and "0.34" in table


def test_each_network_runs_on_lung_boxes_of_any_size(tmp_path):
    """Lung boxes are padded to the sides each network takes, probed once (a network of five
    unpadded poolings needs multiples of 32): a 45 x 70 box runs through the zoo's networks."""
    import numpy as np
    import torch

    from covseg.infer import LesionSegmenter
    from covseg.models import available_models, build_model, input_multiple

    assert input_multiple(build_model("anamnet")) == 16
    five_poolings = torch.nn.Sequential(*[torch.nn.MaxPool2d(2)] * 5,
                                        torch.nn.Upsample(scale_factor=32),
                                        torch.nn.Conv2d(1, 3, 1))  # unpadded: sides of 32 only
    assert input_multiple(five_poolings) == 32
    images = np.random.default_rng(0).random((2, 96, 112), dtype=np.float32)
    lungs = np.zeros(images.shape, bool)
    lungs[:, 20:65, 15:85] = True
    for name in ("resnet34_unet", "mobilenetv2_unet", "segnet", "anamnet"):
        torch.save(build_model(name).state_dict(), tmp_path / f"{name}.pt")
        segmenter = LesionSegmenter(tmp_path / f"{name}.pt", model=name, backend="torch",
                                    precision="fp32")
        labels = segmenter.predict(images, lungs)
        assert labels.shape == images.shape and not labels[~lungs].any(), name
    assert len(available_models()) >= 11
