"""effdl.models: MobileNetV1/V2 and SmallResNet against the papers, torchvision and hand counts;
fuse_dwsep_ coverage on them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import effdl
from effdl.models import (
    InvertedResidual,
    MobileNetV1,
    MobileNetV2,
    ResNetTeacher,
    SmallResNet,
    count_flops,
    count_params,
)
from effdl.models._layers import _make_divisible, fit_strides
from effdl.nn import DWSeparableConv2d


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def depthwise_convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
               for m in model.modules())


def randomise_bn(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that folding them is really tested."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def final_map_side(model: nn.Module, side: int, in_channels: int = 3) -> int:
    with torch.no_grad():
        return model.eval().features(torch.randn(1, in_channels, side, side)).shape[-1]


@pytest.mark.parametrize("v, divisor, expected", [
    (32 * 0.35, 8, 16),   # 8 would lose more than 10 % of 11.2: one more step
    (24 * 0.5, 8, 16),    # 12 rounds half up
    (100, 8, 104), (3, 8, 8), (1280, 8, 1280), (96 * 0.75, 8, 72),
])
def test_make_divisible_by_hand(v, divisor, expected):
    assert _make_divisible(v, divisor) == expected


def test_fit_strides_keeps_paper_strides_from_96_and_drops_early_ones_below():
    paper = [2, 1, 2, 2, 2, 1, 2, 1]  # MobileNetV2: stem, then the seven stages
    assert fit_strides(paper, 224) == paper
    assert fit_strides(paper, 96) == paper  # 96 / 32 = 3: the smallest paper resolution
    assert fit_strides(paper, 64) == [1, 1, 2, 2, 2, 1, 2, 1]   # 64 / 16 = 4
    assert fit_strides(paper, 32) == [1, 1, 1, 2, 2, 1, 2, 1]   # 32 / 8 = 4
    assert fit_strides(paper, 8) == [1, 1, 1, 1, 1, 1, 2, 1]    # 8 / 2 = 4
    assert fit_strides(paper, 2) == [1] * 8
    with pytest.raises(ValueError, match="input_size"):
        fit_strides(paper, 0)


def test_mobilenet_v2_matches_torchvision_params_and_flops():
    torchvision = pytest.importorskip("torchvision")
    x = torch.randn(1, 3, 224, 224)
    ours, theirs = MobileNetV2(), torchvision.models.mobilenet_v2(num_classes=1000)
    assert count_params(ours) == count_params(theirs) == 3_504_872
    flops = count_flops(ours, x)
    assert flops == count_flops(theirs, x)
    assert abs(flops / 2 - 300e6) / 300e6 < 0.01  # the paper's 300 M multiply-adds
    # the same layer shapes in the same order, not just the same totals
    shapes = [tuple(p.shape) for p in ours.parameters()]
    assert shapes == [tuple(p.shape) for p in theirs.parameters()]
    for width in (0.5,):
        assert count_params(MobileNetV2(width_mult=width)) == \
            count_params(torchvision.models.mobilenet_v2(width_mult=width))


def test_mobilenet_v1_params_and_flops_by_hand():
    setting = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    params, c = 3 * 32 * 9 + 2 * 32, 32  # stem conv + BN (weight, bias)
    for out, _ in setting:
        params += c * 9 + 2 * c + c * out + 2 * out  # depthwise + BN + pointwise + BN
        c = out
    params += 1024 * 1000 + 1000
    model = MobileNetV1()
    assert count_params(model) == params == 4_231_976  # the paper's 4.2 M
    macs = count_flops(model, torch.randn(1, 3, 224, 224)) / 2
    assert abs(macs - 569e6) / 569e6 < 0.005  # the paper's 569 M multiply-adds
    assert final_map_side(model, 224) == 7


def test_small_resnet_params_by_hand():
    def block(cin, cout):
        shortcut = cin * cout + 2 * cout if cin != cout else 0
        return cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout + shortcut

    params = 3 * 16 * 9 + 2 * 16  # stem
    c = 16
    for width in (16, 32, 64):
        for _ in range(3):
            params += block(c, width)
            c = width
    params += 64 * 10 + 10
    model = SmallResNet(num_classes=10, in_channels=3)  # ResNet-20
    assert count_params(model) == params == 272_474
    assert ResNetTeacher is SmallResNet
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert SmallResNet(num_classes=10, in_channels=1, depths=(1, 1), widths=(8, 16))(
        torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("cls", [MobileNetV1, MobileNetV2])
@pytest.mark.parametrize("width, in_channels, side", [(0.25, 3, 96), (1.0, 3, 32), (0.5, 3, 32), (0.75, 1, 8)])
def test_output_shapes(cls, width, in_channels, side):
    model = cls(num_classes=7, width_mult=width, in_channels=in_channels, input_size=side).eval()
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, side, side)).shape == (2, 7)
    assert 3 <= final_map_side(model, side, in_channels) <= 4  # never collapsed to 1x1, never left large


def test_final_feature_map_follows_input_size():
    assert final_map_side(MobileNetV2(width_mult=0.25, input_size=224), 224) == 7
    assert final_map_side(MobileNetV2(width_mult=0.25, input_size=96), 96) == 3
    digits = MobileNetV2(num_classes=10, width_mult=0.25, in_channels=1, input_size=8)
    assert final_map_side(digits, 8, 1) == 4
    assert [b.stride for b in digits.features if isinstance(b, InvertedResidual)].count(2) == 1


def test_inverted_residual_structure_and_residual():
    block = InvertedResidual(16, 16, 1, expand_ratio=6).eval()
    assert block.use_residual and len(block.conv) == 4  # expand, depthwise, project conv, project BN
    assert block.conv[0][0].out_channels == 96 and block.conv[1][0].groups == 96
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in block.conv[2:])  # linear bottleneck
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.conv(x))
    assert not InvertedResidual(16, 24, 1, 6).use_residual and not InvertedResidual(16, 16, 2, 6).use_residual
    assert len(InvertedResidual(16, 16, 1, expand_ratio=1).conv) == 3  # no expansion layer


@pytest.mark.parametrize("make, side, in_channels", [
    (lambda: MobileNetV2(), 32, 3),  # built for 224 (all 17 blocks at full width), run small
    (lambda: MobileNetV2(width_mult=0.35, num_classes=10), 64, 3),
    (lambda: MobileNetV1(width_mult=0.5, num_classes=10), 64, 3),
    (lambda: MobileNetV2(num_classes=10, width_mult=0.25, in_channels=1, input_size=8), 8, 1),
    (lambda: MobileNetV1(num_classes=10, width_mult=0.25, in_channels=1, input_size=8), 8, 1),
], ids=["v2", "v2-0.35", "v1-0.5", "v2-digits", "v1-digits"])
def test_fuse_dwsep_covers_every_depthwise_conv(make, side, in_channels):
    torch.manual_seed(0)
    model = make().eval()
    randomise_bn(model)
    n_depthwise = depthwise_convs(model)
    x = torch.randn(2, in_channels, side, side)
    with torch.no_grad():
        ref = model(x)
    effdl.fuse_dwsep_(model, verbose=False)
    assert effdl.convert.last_report.skipped == []
    assert sum(isinstance(m, DWSeparableConv2d) for m in model.modules()) == n_depthwise > 0
    assert depthwise_convs(model) == 0
    with torch.no_grad():
        assert rel_err(model(x), ref) < 1e-4


def test_models_train():
    model = MobileNetV2(num_classes=10, width_mult=0.25, in_channels=1, input_size=8).train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.arange(4))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("make, match", [
    (lambda: MobileNetV2(width_mult=0), "width_mult"),
    (lambda: MobileNetV2(in_channels=0), "in_channels"),
    (lambda: MobileNetV2(num_classes=0), "num_classes"),
    (lambda: MobileNetV2(input_size=0), "input_size"),
    (lambda: MobileNetV2(inverted_residual_setting=[(6, 24, 2)]), "inverted_residual_setting"),
    (lambda: MobileNetV2(inverted_residual_setting=[(6, 24, 0, 1)]), "inverted_residual_setting"),
    (lambda: MobileNetV2(last_channel=0), "last_channel"),
    (lambda: MobileNetV1(width_mult=-1), "width_mult"),
    (lambda: MobileNetV1(setting=[(64, 1, 1)]), "setting"),
    (lambda: InvertedResidual(8, 8, 3, 6), "stride"),
    (lambda: SmallResNet(depths=(1, 1), widths=(8,)), "depths and widths"),
    (lambda: SmallResNet(depths=(0, 1), widths=(8, 8)), "depths and widths"),
    (lambda: SmallResNet(in_channels=0), "in_channels"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_exports():
    assert effdl.models.MobileNetV2 is MobileNetV2 and effdl.models.count_params is count_params
