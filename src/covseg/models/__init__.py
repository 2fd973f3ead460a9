"""The model zoo: `build_model(name)` for Anam-Net and the networks it is compared with."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from covseg.errors import CovsegError
from covseg.models.anamnet import AnamNet
from covseg.models.deeplabv3plus import DeepLabV3Plus
from covseg.models.encoder_unet import mobilenetv2_unet, resnet34_unet, vgg19_unet
from covseg.models.enet import ENet
from covseg.models.lednet import LEDNet
from covseg.models.monai_unets import UNetPlusPlus, attention_unet, lung_unet, unet
from covseg.models.segnet import SegNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "anamnet": AnamNet,
    "unet": unet,
    "enet": ENet,
    "unet++": UNetPlusPlus,
    "segnet": SegNet,
    "attention_unet": attention_unet,
    "lednet": LEDNet,
    "deeplabv3+": DeepLabV3Plus,
    "vgg19_unet": vgg19_unet,
    "resnet34_unet": resnet34_unet,
    "mobilenetv2_unet": mobilenetv2_unet,
    "lung_unet": lung_unet,
}


def available_models() -> list[str]:
    return list(_REGISTRY)


def build_model(name: str, in_channels: int = 1, num_classes: int = 3, **kwargs) -> nn.Module:
    """A freshly initialised network by registry name (case-insensitive)."""
    key = name.lower()
    if key not in _REGISTRY:
        raise CovsegError(f"unknown model '{name}'; choose one of: {', '.join(available_models())}")
    return _REGISTRY[key](in_channels=in_channels, num_classes=num_classes, **kwargs)


def input_multiple(model: nn.Module, candidates: tuple[int, ...] = (16, 32, 64)) -> int:
    """The side lengths a network takes whole: the smallest candidate m for which an input of
    3m x 5m comes back at its own size (Anam-Net and the U-Nets of four poolings: 16; the
    encoder U-Nets and SegNet, five: 32). Probed once, not listed, so a new model needs nothing."""
    for m in candidates:
        x = torch.zeros(1, 1, 3 * m, 5 * m)
        try:
            with torch.inference_mode():
                out = model.eval()(x)
        except RuntimeError:  # the skip connections' sizes disagree
            continue
        if tuple(out.shape[-2:]) == tuple(x.shape[-2:]):
            return m
    raise CovsegError(f"{model.__class__.__name__} gives back no input of sides "
                      f"{', '.join(map(str, candidates))} x (3, 5) at its size")
