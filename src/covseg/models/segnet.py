"""SegNet (Badrinarayanan et al. 2017): VGG16 encoder, a mirrored decoder upsampling with the
encoder's max-pooling indices (no skip concatenation), 13 + 13 conv layers. Five poolings want
sides that are multiples of 32: other inputs are zero-padded to that and the output cropped back,
so SegNet takes the multiples of 16 that covseg's predictor gives every network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from covseg.models.backbones import conv_bn, unpool2x

VGG16 = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class SegNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 3):
        super().__init__()
        self.enc = nn.ModuleList()
        prev = in_channels
        for width, depth in VGG16:
            self.enc.append(nn.Sequential(*[conv_bn(prev if i == 0 else width, width)
                                            for i in range(depth)]))
            prev = width
        self.dec = nn.ModuleList()
        for k, (width, depth) in enumerate(reversed(VGG16)):
            nxt = VGG16[-k - 2][0] if k < len(VGG16) - 1 else None
            layers = [conv_bn(width, width) for _ in range(depth - 1)]
            layers.append(conv_bn(width, nxt) if nxt else conv_bn(width, width))
            self.dec.append(nn.Sequential(*layers))
        self.head = nn.Conv2d(VGG16[0][0], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 32, 0, -h % 32))
        indices = []
        for stage in self.enc:
            x, idx = F.max_pool2d(stage(x), 2, 2, return_indices=True)
            indices.append(idx)
        for stage, idx in zip(self.dec, reversed(indices)):
            x = stage(unpool2x(x, idx))
        return self.head(x)[..., :h, :w]
