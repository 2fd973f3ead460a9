"""U-Net, Attention U-Net and U-Net++ from MONAI, configured as their original papers.

Original widths (64..1024 for U-Net and Attention U-Net, 32..512 for U-Net++) with BatchNorm and
ReLU, the conv unit of the original designs, instead of MONAI's instance norm + leaky ReLU.
"""
from __future__ import annotations

import torch
from monai.networks.nets import AttentionUnet, BasicUNet, BasicUNetPlusPlus
from torch import nn

_ORIGINAL = {"act": ("relu", {"inplace": True}), "norm": ("batch", {})}


def unet(in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    """Ronneberger et al. 2015: 4 poolings, 64..1024 channels, transposed-conv upsampling."""
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                     features=(64, 128, 256, 512, 1024, 64), upsample="deconv", **_ORIGINAL)


def attention_unet(in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    """Oktay et al. 2018: U-Net whose skip connections pass through additive attention gates."""
    return AttentionUnet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                         channels=(64, 128, 256, 512, 1024), strides=(2, 2, 2, 2))


class UNetPlusPlus(nn.Module):
    """Zhou et al. 2018: nested dense skip pathways (MONAI's BasicUNetPlusPlus, one output)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3):
        super().__init__()
        self.net = BasicUNetPlusPlus(spatial_dims=2, in_channels=in_channels,
                                     out_channels=num_classes, features=(32, 64, 128, 256, 512, 32),
                                     upsample="deconv", **_ORIGINAL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def lung_unet(in_channels: int = 1, num_classes: int = 2, width: int = 16) -> nn.Module:
    """A small U-Net for lung masks, covseg's learned lung model: width..8 x width channels
    (16: 0.5 M parameters; 32: 2.0 M, a config's `model_args: {width: 32}`)."""
    w = width
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                     features=(w, w, 2 * w, 4 * w, 8 * w, w), upsample="deconv", **_ORIGINAL)
