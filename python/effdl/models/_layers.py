"""Building blocks shared by the efficient architectures.

Blocks are plain ``nn.Sequential`` containers of Conv -> BatchNorm -> activation
wherever the data flows straight through, so that :func:`effdl.fuse_dwsep_`
(which looks into plain Sequentials only) can fuse every depthwise-separable
pair; a block has a ``forward`` of its own only where a residual add needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

# A stride is kept only while the last feature map stays at least this many
# pixels wide: 3x3 is what MobileNet's 32x downsampling leaves at the smallest
# resolution of the papers (96x96), so every paper resolution keeps every stride.
MIN_FEATURE_SIZE = 3


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (as in the
    MobileNetV2 reference code and torchvision), never going below ``min_value``
    (default ``divisor``) nor more than 10 % below ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # rounding down must not remove more than 10 %
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    """``Conv2d(bias=False) -> BatchNorm2d -> activation`` with "same" padding
    (``(kernel_size - 1) // 2``). ``activation=None`` leaves the activation out.
    A plain Sequential: no forward of its own, so effdl's conversions look into it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None = nn.ReLU6) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


def fit_strides(strides: Sequence[int], input_size: int) -> list[int]:
    """Adapt a network's downsampling to small images.

    ``strides`` are those of the network's strided layers in order (stem first).
    Going from the last layer back, a stride is kept while the product of the
    kept strides leaves a last feature map of at least :data:`MIN_FEATURE_SIZE`
    pixels (``input_size // product >= 3``); the others become 1. So the early,
    high-resolution layers give up their stride first (as in the CIFAR variants
    of ResNet and MobileNet) and every input size from 96 up keeps the paper's
    strides, while an 8x8 image keeps a single stride-2 layer (4x4 at the end).
    """
    if input_size < 1:
        raise ValueError(f"input_size must be a positive image side in pixels, got {input_size}")
    kept = list(strides)
    product = 1
    for i in reversed(range(len(kept))):
        if input_size // (product * kept[i]) >= MIN_FEATURE_SIZE:
            product *= kept[i]
        else:
            kept[i] = 1
    return kept


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet/ResNet initialisation: Kaiming-normal (fan-out)
    convolutions, unit-scale BatchNorms, small-normal classifiers, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def check_positive(name: str, value: float, cls: str) -> None:
    if not value > 0:
        raise ValueError(f"{cls}: {name} must be positive, got {value}")
