"""ENet (Paszke et al. 2016): a tiny real-time encoder-decoder of bottleneck blocks.

Initial block (3x3 stride-2 conv beside a max-pool), stage 1 (downsample to 64, 4 bottlenecks),
stages 2-3 (downsample to 128, regular / dilated 2-16 / asymmetric 5x1+1x5 bottlenecks),
stages 4-5 (max-unpooling bottlenecks back to 64 and 16) and a transposed-conv classifier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from covseg.models.backbones import unpool2x


def _bn_prelu(ch: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(ch), nn.PReLU()]


class ENetBottleneck(nn.Module):
    """kind: 'regular', 'dilated' (with `dilation`), 'asymmetric', 'down' or 'up'."""

    def __init__(self, in_ch: int, out_ch: int, kind: str = "regular", dilation: int = 1,
                 dropout: float = 0.1):
        super().__init__()
        inner = in_ch // 4
        self.kind = kind
        first = (nn.Conv2d(in_ch, inner, 2, 2, bias=False) if kind == "down"
                 else nn.Conv2d(in_ch, inner, 1, bias=False))
        if kind == "asymmetric":
            middle = [nn.Conv2d(inner, inner, (5, 1), padding=(2, 0), bias=False),
                      nn.Conv2d(inner, inner, (1, 5), padding=(0, 2), bias=False)]
        elif kind == "up":
            middle = [nn.ConvTranspose2d(inner, inner, 3, 2, 1, output_padding=1, bias=False)]
        else:
            middle = [nn.Conv2d(inner, inner, 3, padding=dilation, dilation=dilation, bias=False)]
        self.ext = nn.Sequential(first, *_bn_prelu(inner), *middle, *_bn_prelu(inner),
                                 nn.Conv2d(inner, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
                                 nn.Dropout2d(dropout))
        self.main_proj = (nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
                          if kind == "up" else None)
        self.out_ch = out_ch
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None):
        ext = self.ext(x)
        if self.kind == "down":
            main, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            main = F.pad(main, (0, 0, 0, 0, 0, self.out_ch - main.shape[1]))
            return self.act(main + ext), idx
        if self.kind == "up":
            main = unpool2x(self.main_proj(x), indices)
            return self.act(main + ext)
        return self.act(x + ext)


class ENet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 3):
        super().__init__()
        self.initial_conv = nn.Conv2d(in_channels, 16 - in_channels, 3, 2, 1, bias=False)
        self.initial_act = nn.Sequential(*_bn_prelu(16))
        self.down1 = ENetBottleneck(16, 64, "down", dropout=0.01)
        self.stage1 = nn.Sequential(*[ENetBottleneck(64, 64, dropout=0.01) for _ in range(4)])
        self.down2 = ENetBottleneck(64, 128, "down")
        pattern = [("regular", 1), ("dilated", 2), ("asymmetric", 1), ("dilated", 4),
                   ("regular", 1), ("dilated", 8), ("asymmetric", 1), ("dilated", 16)]
        self.stage23 = nn.Sequential(*[ENetBottleneck(128, 128, k, d) for _ in range(2)
                                       for k, d in pattern])
        self.up4 = ENetBottleneck(128, 64, "up")
        self.stage4 = nn.Sequential(ENetBottleneck(64, 64), ENetBottleneck(64, 64))
        self.up5 = ENetBottleneck(64, 16, "up")
        self.stage5 = ENetBottleneck(16, 16)
        self.classifier = nn.ConvTranspose2d(16, num_classes, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial_act(torch.cat([self.initial_conv(x), F.max_pool2d(x, 2)], dim=1))
        x, idx1 = self.down1(x)
        x = self.stage1(x)
        x, idx2 = self.down2(x)
        x = self.stage23(x)
        x = self.stage4(self.up4(x, idx2))
        x = self.stage5(self.up5(x, idx1))
        return self.classifier(x)
