"""LEDNet (Wang et al. 2019): split-shuffle-non-bottleneck (SS-nbt) encoder and an attention
pyramid network (APN) decoder, under a million parameters."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from covseg.models.backbones import conv_bn


class DownsamplerBlock(nn.Module):
    """3x3 stride-2 conv beside a 2x2 max-pool, concatenated (as in ENet's initial block)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), F.max_pool2d(x, 2)], dim=1)))


def _factorised(ch: int, dilation: int) -> nn.Sequential:
    """3x1 + 1x3 convs, then dilated 3x1 + 1x3, BN + ReLU."""
    d = dilation
    return nn.Sequential(
        nn.Conv2d(ch, ch, (3, 1), padding=(1, 0)), nn.ReLU(inplace=True),
        nn.Conv2d(ch, ch, (1, 3), padding=(0, 1), bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
        nn.Conv2d(ch, ch, (3, 1), padding=(d, 0), dilation=(d, 1)), nn.ReLU(inplace=True),
        nn.Conv2d(ch, ch, (1, 3), padding=(0, d), dilation=(1, d), bias=False), nn.BatchNorm2d(ch))


class SSnbt(nn.Module):
    """Split the channels in two, factorised convs on each half, concat, residual add, shuffle."""

    def __init__(self, ch: int, dilation: int = 1, dropout: float = 0.0):
        super().__init__()
        self.left = _factorised(ch // 2, dilation)
        self.right = _factorised(ch // 2, dilation)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        y = F.relu(x + self.drop(torch.cat([self.left(a), self.right(b)], dim=1)))
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class APN(nn.Module):
    """Attention pyramid: a one-channel 7x7/5x5/3x3 downsampling pyramid gives an attention map
    that weights a 1x1 branch of class scores; global pooling adds image-level context."""

    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        self.down1 = conv_bn(in_ch, 1, 7, 2)
        self.down2 = conv_bn(1, 1, 5, 2)
        self.down3 = nn.Sequential(conv_bn(1, 1, 3, 2), conv_bn(1, 1, 3))
        self.mid2 = conv_bn(1, 1, 5)
        self.mid1 = conv_bn(1, 1, 7)
        self.branch = conv_bn(in_ch, num_classes, 1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn(in_ch, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def up(t, like):
            return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=False)
        d1 = self.down1(x)
        d2 = self.down2(d1)
        p = self.down3(d2)
        p = up(p, d2) + self.mid2(d2)
        p = up(p, d1) + self.mid1(d1)
        return up(p, x) * self.branch(x) + up(self.pool(x), x)


class LEDNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 3):
        super().__init__()
        layers: list[nn.Module] = [DownsamplerBlock(in_channels, 32)]
        layers += [SSnbt(32, 1, 0.03) for _ in range(3)]
        layers.append(DownsamplerBlock(32, 64))
        layers += [SSnbt(64, 1, 0.03) for _ in range(2)]
        layers.append(DownsamplerBlock(64, 128))
        layers += [SSnbt(128, d, 0.3) for d in (1, 2, 5, 9, 2, 5, 9, 17)]
        self.encoder = nn.Sequential(*layers)
        self.decoder = APN(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.decoder(self.encoder(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
