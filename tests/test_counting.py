"""count_params / count_flops against hand-computed values."""

import torch
from torch import nn

import effdl
from effdl.models import count_flops, count_params
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear


def test_linear_and_conv_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 5, 10))
    x = torch.randn(2, 3, 5, 5)
    conv = 2 * (2 * 5 * 5) * (8 * 3 * 3 * 3)  # batch * positions * weights
    lin = 2 * 2 * (200 * 10)
    assert count_flops(model, x) == conv + lin
    assert count_flops(model, x, per_layer=True) == {"0": conv, "3": lin}
    assert count_params(model) == 8 * 27 + 8 + 200 * 10 + 10


def test_grouped_strided_conv_and_nonzero():
    conv = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False)
    x = torch.randn(1, 4, 8, 8)
    assert count_flops(conv, x) == 2 * (4 * 4) * (4 * 9)
    with torch.no_grad():
        conv.weight[:2] = 0
    assert count_flops(conv, x, nonzero=True) == 2 * (4 * 4) * (2 * 9)
    assert count_params(conv, nonzero=True) == 2 * 9


def test_compressed_modules():
    lin = nn.Linear(16, 6)
    x = torch.randn(3, 16)
    sparse, q = SparseLinear.from_dense(lin), QLinear.from_float(lin)
    assert count_flops(sparse, x) == 2 * 3 * 6 * 8
    assert count_flops(q, x) == count_flops(lin, x) == 2 * 3 * 6 * 16
    assert count_params(sparse) == 6 * 8 + 6 and count_params(q) == count_params(lin)
    dw = DWSeparableConv2d(4, 8, 3, stride=2, padding=1)
    assert count_flops(dw, torch.randn(1, 4, 6, 6)) == 2 * 9 * (4 * 9 + 8 * 4)


def test_shared_weights_count_once_and_mode_restored():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, lin).train()
    assert count_params(model) == 20
    assert count_flops(model, torch.randn(1, 4)) == 2 * 2 * 16  # called twice
    assert model.training
    assert effdl.models.count_flops is count_flops
