"""A small ResNet for small images (He et al. 2016, the CIFAR family: ResNet-20/32/56).

The teacher of the distillation examples: accurate on the 8x8 digits while much
larger than the MobileNet students.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from effdl.models._layers import ConvBNAct, check_positive


class BasicBlock(nn.Module):
    """Two 3x3 Conv-BN layers and a residual add, then ReLU. The shortcut is the
    identity, or a strided 1x1 Conv-BN where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, 3, stride, activation=nn.ReLU)
        self.conv2 = ConvBNAct(out_channels, out_channels, 3, activation=None)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBNAct(in_channels, out_channels, 1, stride, activation=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet of BasicBlocks for small images: a 3x3 stem (stride 1), stages of
    ``depths[i]`` blocks with ``widths[i]`` channels (each stage after the first
    halves the resolution), global average pooling and a linear classifier.

    The defaults are ResNet-20 (``depths=(3, 3, 3)``, ``widths=(16, 32, 64)``,
    0.27 M parameters); ``depths=(n,)*3`` gives ResNet-(6n+2).

    Args:
        num_classes: outputs of the classifier.
        in_channels: channels of the input images (1 for the digits).
        depths: blocks per stage.
        widths: channels per stage (same length as ``depths``).
    Input ``[B, in_channels, H, W]`` float; output logits ``[B, num_classes]``.
    The stages are ``self.stages[i]`` (handy as distillation hint layers).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, depths: Sequence[int] = (3, 3, 3),
                 widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        check_positive("num_classes", num_classes, "SmallResNet")
        check_positive("in_channels", in_channels, "SmallResNet")
        if len(depths) != len(widths) or not depths or min(*depths, *widths) < 1:
            raise ValueError(f"SmallResNet: depths and widths must be non-empty lists of positive ints of the "
                             f"same length, got depths={list(depths)}, widths={list(widths)}")
        self.stem = ConvBNAct(in_channels, widths[0], 3, activation=nn.ReLU)
        stages, channels = [], widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(BasicBlock(channels, width, 2 if i > 0 and j == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BasicBlock):
                # start each residual branch at zero (Goyal et al. 2017): the block begins as the identity
                nn.init.zeros_(m.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


ResNetTeacher = SmallResNet
"""The name the distillation examples use for their teacher."""
