"""Anam-Net (Paluru et al., IEEE TNNLS 2021): a light 2-D encoder-decoder for lung-masked CT.

The encoder is four 3x3 conv stages (64, 128, 256, 256 channels); after each of the first three
max-pools sits an anamorphic depth (AD) block. The decoder upsamples with 2x2 transposed convs;
after the first three of them sits an AD block, then the skip concatenation and a 3x3 conv.
84 GMAC per 512x512 slice.

Parameter count: with its own weights in every AD block the design has 4.63 M parameters. The
paper reports 4.47 M, which is, to the parameter (4,471,555), the same design with each decoder AD
block sharing the weights of the encoder AD block of equal width. That sharing is the default here
so that the count matches the paper; `shared_decoder_ad=False` gives the 4.63 M variant.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    """Conv + BatchNorm + ReLU, the unit every layer of Anam-Net is made of."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ADBlock(nn.Module):
    """Anamorphic depth block: squeeze to C/4 (1x1), mix (3x3), expand to C (1x1), add the input.

    The squeeze makes the 3x3 conv 16x cheaper than a full-width one, which is where
    Anam-Net's small size comes from.
    """

    def __init__(self, channels: int, squeeze: int = 4):
        super().__init__()
        inner = channels // squeeze
        self.branch = nn.Sequential(
            conv_bn_relu(channels, inner, 1),
            conv_bn_relu(inner, inner, 3),
            conv_bn_relu(inner, channels, 1),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.branch(x))


class _UpStage(nn.Module):
    """Transposed-conv upsampling, an AD block (or identity), skip concatenation, 3x3 conv."""

    def __init__(self, in_ch: int, up_ch: int, skip_ch: int, out_ch: int, ad: nn.Module):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, up_ch, 2, stride=2)
        self.ad = ad
        self.conv = conv_bn_relu(up_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.ad(self.up(x)), skip], dim=1))


class AnamNet(nn.Module):
    """Anam-Net for `num_classes`-way segmentation of slices whose sides are divisible by 16.

    `ad_blocks=False` replaces every AD block by the identity, for the paper's ablation.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 3, ad_blocks: bool = True,
                 shared_decoder_ad: bool = True):
        super().__init__()
        widths = (64, 128, 256, 256)

        def ad(channels: int) -> nn.Module:
            return ADBlock(channels) if ad_blocks else nn.Identity()

        self.enc = nn.ModuleList()
        self.enc_ad = nn.ModuleList()
        prev = in_channels
        for i, w in enumerate(widths):
            self.enc.append(conv_bn_relu(prev, w))
            self.enc_ad.append(ad(w) if i < 3 else nn.Identity())
            prev = w
        if shared_decoder_ad:
            dec_ad = [self.enc_ad[2], self.enc_ad[2], self.enc_ad[1]]
        else:
            dec_ad = [ad(256), ad(256), ad(128)]
        self.pool = nn.MaxPool2d(2)
        self.dec = nn.ModuleList([
            _UpStage(256, 256, 256, 256, dec_ad[0]),
            _UpStage(256, 256, 256, 256, dec_ad[1]),
            _UpStage(256, 128, 128, 128, dec_ad[2]),
            _UpStage(128, 64, 64, 64, nn.Identity()),
        ])
        self.head = nn.Conv2d(64, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for conv, ad in zip(self.enc, self.enc_ad):
            x = conv(x)
            skips.append(x)
            x = ad(self.pool(x))
        for stage, skip in zip(self.dec, reversed(skips)):
            x = stage(x, skip)
        return self.head(x)
