"""MobileNetV1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018).

Both are built from plain ``nn.Sequential`` Conv-BN-activation runs, so
:func:`effdl.fuse_dwsep_` turns every depthwise conv with the 1x1 conv that
follows it into one :class:`effdl.nn.DWSeparableConv2d` (call it on an eval-mode
model: the BatchNorms are folded). At ``width_mult=1.0`` and the default
settings they are the networks of the papers (MobileNetV2 has exactly
torchvision's parameters and FLOPs).

Small images: ``input_size`` is the side of the images the network is built
for. Below 96 pixels the earliest stride-2 layers become stride 1 (see
:func:`effdl.models._layers.fit_strides`), so that the 8x8 digits are not
reduced to a single pixel by the third stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from effdl.models._layers import ConvBNAct, _make_divisible, check_positive, fit_strides, init_weights

# (expansion t, output channels c, repeats n, stride of the first repeat s): Table 2 of the paper
MOBILENET_V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# (output channels, stride) of each depthwise-separable block: Table 1 of the paper
MOBILENET_V1_SETTING: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def depthwise_separable(in_channels: int, out_channels: int, stride: int = 1,
                        activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """MobileNetV1's block: 3x3 depthwise conv -> BN -> act -> 1x1 conv -> BN -> act,
    as one plain Sequential (``fuse_dwsep_`` turns it into one fused module)."""
    return nn.Sequential(
        ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, activation=activation),
        ConvBNAct(in_channels, out_channels, 1, activation=activation),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (skipped when ``expand_ratio == 1``) ->
    3x3 depthwise -> linear 1x1 projection, plus the input when the stride is 1
    and the channels match. The layers live in ``self.conv``, a plain Sequential
    that ``fuse_dwsep_`` looks into; only the residual add is in ``forward``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2: a 3x3 stem, inverted-residual stages, a 1x1 conv to
    ``last_channel``, global average pooling, dropout and a linear classifier.

    Args:
        num_classes: outputs of the classifier.
        width_mult: scales every channel count (rounded by ``_make_divisible``
            to multiples of ``round_nearest``); ``last_channel`` is only scaled up.
        in_channels: channels of the input images (1 for the digits).
        input_size: side of the (square) input the network is built for; below
            96 the earliest stride-2 layers become stride 1 (the model still
            accepts any input size).
        inverted_residual_setting: rows ``(t, c, n, s)`` as in Table 2 of the paper
            (the default); a smaller table gives a smaller network.
        round_nearest: channel counts are multiples of this.
        last_channel: channels of the last 1x1 conv before pooling (default
            ``1280 * max(1, width_mult)``, rounded).
        dropout: dropout probability before the classifier.
    Input ``[B, in_channels, H, W]`` float; output logits ``[B, num_classes]``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        in_channels: int = 3,
        input_size: int = 224,
        inverted_residual_setting: Sequence[Sequence[int]] | None = None,
        round_nearest: int = 8,
        last_channel: int | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("width_mult", width_mult),
                            ("in_channels", in_channels), ("round_nearest", round_nearest)):
            check_positive(name, value, "MobileNetV2")
        setting = [tuple(row) for row in (inverted_residual_setting or MOBILENET_V2_SETTING)]
        if not setting or any(len(row) != 4 or min(row) < 1 for row in setting):
            raise ValueError("MobileNetV2: inverted_residual_setting must be a non-empty list of rows "
                             f"(t, c, n, s) of positive ints, got {inverted_residual_setting}")
        stem_stride, *stage_strides = fit_strides([2] + [s for _, _, _, s in setting], input_size)

        channels = _make_divisible(32 * width_mult, round_nearest)
        if last_channel is None:
            last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        check_positive("last_channel", last_channel, "MobileNetV2")
        features: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stem_stride)]
        for (t, c, n, _), s in zip(setting, stage_strides, strict=True):
            out = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(ConvBNAct(channels, last_channel, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channel, num_classes))
        self.last_channel = last_channel
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


class MobileNetV1(nn.Module):
    """MobileNetV1: a 3x3 stride-2 stem and 13 depthwise-separable blocks (Table 1
    of the paper), global average pooling, dropout and a linear classifier. ReLU
    after every BatchNorm, as in the paper.

    Args:
        num_classes, in_channels, input_size, round_nearest, dropout: as for
            :class:`MobileNetV2`.
        width_mult: the paper's width multiplier alpha; channel counts are rounded
            to multiples of ``round_nearest`` (none changes at 1.0).
        setting: rows ``(out_channels, stride)``, one per block (default Table 1).
    Input ``[B, in_channels, H, W]`` float; output logits ``[B, num_classes]``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        in_channels: int = 3,
        input_size: int = 224,
        setting: Sequence[Sequence[int]] | None = None,
        round_nearest: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("width_mult", width_mult),
                            ("in_channels", in_channels), ("round_nearest", round_nearest)):
            check_positive(name, value, "MobileNetV1")
        rows = [tuple(row) for row in (setting or MOBILENET_V1_SETTING)]
        if not rows or any(len(row) != 2 or min(row) < 1 for row in rows):
            raise ValueError(f"MobileNetV1: setting must be a non-empty list of rows (out_channels, stride) "
                             f"of positive ints, got {setting}")
        stem_stride, *strides = fit_strides([2] + [s for _, s in rows], input_size)
        channels = _make_divisible(32 * width_mult, round_nearest)
        features: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stem_stride, activation=nn.ReLU)]
        for (c, _), s in zip(rows, strides, strict=True):
            out = _make_divisible(c * width_mult, round_nearest)
            features.append(depthwise_separable(channels, out, s))
            channels = out
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self.last_channel = channels
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)
