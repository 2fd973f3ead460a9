"""DeepLabV3+ (Chen et al. 2018): a ResNet-101 backbone at output stride 16, atrous spatial
pyramid pooling (rates 6, 12, 18 + image pooling) and a decoder that refines with 1/4-scale
features. The backbone is written here (covseg.models.backbones), not taken from torchvision."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from covseg.models.backbones import Bottleneck, ResNetEncoder, conv_bn


class ASPP(nn.Module):
    def __init__(self, in_ch: int, out_ch: int = 256, rates: tuple[int, ...] = (6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn(in_ch, out_ch, 1)] +
                                      [conv_bn(in_ch, out_ch, 3, dilation=r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1, bias=False),
                                  nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn(out_ch * (len(rates) + 2), out_ch, 1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 3,
                 layers: tuple[int, ...] = (3, 4, 23, 3)):
        super().__init__()
        self.backbone = ResNetEncoder(in_channels, Bottleneck, layers, dilate_last=True)
        self.aspp = ASPP(self.backbone.channels[-1])
        self.low = conv_bn(self.backbone.channels[1], 48, 1)
        self.refine = nn.Sequential(conv_bn(256 + 48, 256), conv_bn(256, 256))
        self.head = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        low = self.low(feats[1])
        y = F.interpolate(self.aspp(feats[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head(self.refine(torch.cat([y, low], dim=1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
