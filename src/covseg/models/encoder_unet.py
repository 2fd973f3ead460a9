"""U-Nets on classification encoders, as in the thesis: VGG19, ResNet34 and MobileNetV2.

The decoder is the common one for such U-Nets: at each scale upsample x2 (nearest), concatenate
the encoder's feature map of that scale, two 3x3 conv+BN+ReLU; widths 256, 128, 64, 32, 16.
The encoders stride by up to 32, so inputs are zero-padded to multiples of 32 and the output
cropped back: the networks take the multiples of 16 that covseg's predictor gives every network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from covseg.models.backbones import (BasicBlock, MobileNetV2Encoder, ResNetEncoder, VGGEncoder,
                                     conv_bn)


class DecoderBlock(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.convs = nn.Sequential(conv_bn(in_ch + skip_ch, out_ch), conv_bn(out_ch, out_ch))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class EncoderUNet(nn.Module):
    """A U-Net decoder over any encoder whose features run from stride `first_stride` to 16x that."""

    def __init__(self, encoder: nn.Module, num_classes: int = 3, first_stride: int = 2,
                 decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)):
        super().__init__()
        self.encoder = encoder
        skips = encoder.channels[:-1][::-1]
        n_blocks = len(skips) + (1 if first_stride == 2 else 0)
        widths = decoder_channels[:n_blocks]
        blocks, prev = [], encoder.channels[-1]
        for i, width in enumerate(widths):
            blocks.append(DecoderBlock(prev, skips[i] if i < len(skips) else 0, width))
            prev = width
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(prev, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        feats = self.encoder(F.pad(x, (0, -w % 32, 0, -h % 32)))
        y = feats[-1]
        skips = feats[:-1][::-1]
        for i, block in enumerate(self.decoder):
            y = block(y, skips[i] if i < len(skips) else None)
        return self.head(y)[..., :h, :w]


def vgg19_unet(in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    return EncoderUNet(VGGEncoder(in_channels, (2, 2, 4, 4, 4)), num_classes, first_stride=1)


def resnet34_unet(in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    return EncoderUNet(ResNetEncoder(in_channels, BasicBlock, (3, 4, 6, 3)), num_classes)


def mobilenetv2_unet(in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    return EncoderUNet(MobileNetV2Encoder(in_channels), num_classes)
