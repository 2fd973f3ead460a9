"""Encoders written here (no torchvision): VGG, ResNet and MobileNetV2 feature pyramids.

Each encoder's `forward` returns its feature maps at strides 1/2, 1/4, 1/8, 1/16 and 1/32 of
the input (VGG: 1, 1/2, ..., 1/16 before each pooling), and `channels` lists their widths.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            dilation: int = 1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, dilation * (kernel // 2), dilation=dilation,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_ch)]
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6) else act())
    return nn.Sequential(*layers)


class VGGEncoder(nn.Module):
    """VGG (Simonyan & Zisserman 2015) with BatchNorm; VGG16 = (2, 2, 3, 3, 3), VGG19 = (2, 2, 4, 4, 4)."""

    def __init__(self, in_channels: int = 1, depths: tuple[int, ...] = (2, 2, 4, 4, 4)):
        super().__init__()
        widths = (64, 128, 256, 512, 512)
        self.stages = nn.ModuleList()
        prev = in_channels
        for width, depth in zip(widths, depths):
            layers = []
            for _ in range(depth):
                layers.append(conv_bn(prev, width))
                prev = width
            self.stages.append(nn.Sequential(*layers))
        self.channels = list(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = stage(x)
            feats.append(x)
        return feats


class _Residual(nn.Module):
    """`body(x) + skip(x)`, then ReLU; the skip projects when stride or width change."""

    expansion = 1

    def _skip(self, in_ch: int, out: int, stride: int) -> nn.Module:
        return conv_bn(in_ch, out, 1, stride, act=None) if stride != 1 or in_ch != out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class BasicBlock(_Residual):
    """Two 3x3 convs (ResNet-18/34)."""

    def __init__(self, in_ch: int, width: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(conv_bn(in_ch, width, 3, stride, dilation=dilation),
                                  conv_bn(width, width, 3, dilation=dilation, act=None))
        self.skip = self._skip(in_ch, width, stride)


class Bottleneck(_Residual):
    """1x1 squeeze, 3x3, 1x1 expand by 4 (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(conv_bn(in_ch, width, 1),
                                  conv_bn(width, width, 3, stride, dilation=dilation),
                                  conv_bn(width, out, 1, act=None))
        self.skip = self._skip(in_ch, out, stride)


class ResNetEncoder(nn.Module):
    """ResNet (He et al. 2016). `dilate_last` keeps the last stage at 1/16 (DeepLab's output stride 16)."""

    def __init__(self, in_channels: int = 1, block: type[_Residual] = BasicBlock,
                 layers: tuple[int, ...] = (3, 4, 6, 3), dilate_last: bool = False):
        super().__init__()
        self.stem = conv_bn(in_channels, 64, 7, 2)
        self.stages = nn.ModuleList()
        prev = 64
        self.channels = [64]
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 or (dilate_last and i == 3) else 2
            dilation = 2 if dilate_last and i == 3 else 1
            blocks = [block(prev, width, stride, dilation)]
            prev = width * block.expansion
            blocks += [block(prev, width, 1, dilation) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*blocks))
            self.channels.append(prev)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        x = nn.functional.max_pool2d(x, 3, 2, 1)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
        super().__init__()
        hidden = in_ch * expand
        layers = [conv_bn(in_ch, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn(hidden, out_ch, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks."""

    # (expansion, channels, repeats, stride) as in the paper's Table 2
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.stem = conv_bn(in_channels, 32, 3, 2, act=nn.ReLU6)
        blocks, prev, self.taps = [], 32, []
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(prev, c, s if i == 0 else 1, t))
                prev = c
            self.taps.append(len(blocks) - 1)
        blocks.append(conv_bn(prev, 1280, 1, act=nn.ReLU6))
        self.blocks = nn.ModuleList(blocks)
        # features after strides 2 (16 ch), 4 (24), 8 (32), 16 (96), 32 (1280)
        self.outputs = {self.taps[0], self.taps[1], self.taps[2], self.taps[4], len(blocks) - 1}
        self.channels = [16, 24, 32, 96, 1280]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.outputs:
                feats.append(x)
        return feats


def unpool2x(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Max-unpooling by 2 with the indices of `max_pool2d(..., return_indices=True)`.

    Written as a scatter so that it exports to ONNX (F.max_unpool2d does not trace here).
    """
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, 4 * h * w)
    return out.scatter(2, indices.flatten(2), x.flatten(2)).view(n, c, 2 * h, 2 * w)
