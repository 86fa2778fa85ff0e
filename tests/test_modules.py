"""SparseLinear, QLinear and DWSeparableConv2d: output vs the float module,
training keeps the pattern, state_dict round trips, reprs, conversion errors."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import effdl
from effdl import formats
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).norm() / b.detach().double().norm())


def roundtrip(module: nn.Module) -> dict:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- SparseLinear


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (2, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sparse_linear_matches_pruned_dense(n, m, dtype):
    torch.manual_seed(0)
    lin = nn.Linear(64, 48).to(dtype)
    sl = SparseLinear.from_dense(lin, n, m)
    mask = formats.nm_mask(lin.weight, n, m)
    dense = nn.Linear(64, 48).to(dtype)
    with torch.no_grad():
        dense.weight.copy_(lin.weight * mask)
        dense.bias.copy_(lin.bias)
    x = torch.randn(3, 7, 64, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert rel_err(sl(x), dense(x)) < tol
    assert torch.equal(sl.to_dense().weight, dense.weight)
    assert sl(x).shape == (3, 7, 48)


def test_sparse_linear_keeps_an_existing_pattern():
    lin = nn.Linear(16, 8)
    with torch.no_grad():
        lin.weight.mul_(formats.nm_mask(lin.weight, 2, 4))
        lin.weight[0, :4] = torch.tensor([0.0, 0.0, 0.0, 1e-3])  # small but kept: already N:M
    sl = SparseLinear.from_dense(lin)
    assert torch.equal(sl.dense_weight(), lin.weight.detach())


def test_sparse_linear_training_keeps_pattern():
    torch.manual_seed(0)
    sl = SparseLinear(32, 16)
    meta0 = sl.meta.clone()
    opt = torch.optim.SGD(sl.parameters(), lr=0.1)
    x, target = torch.randn(64, 32), torch.randn(64, 16)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.mse_loss(sl(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert torch.equal(sl.meta, meta0)
    w = sl.dense_weight()
    assert int((w != 0).view(16, -1, 4).sum(-1).max()) <= 2


def test_sparse_linear_state_dict_roundtrip_and_contents():
    torch.manual_seed(0)
    sl = SparseLinear(40, 12, n=2, m=8)
    sd = roundtrip(sl)
    assert set(sd) == {"values", "meta", "bias", "nm_pattern", "format_version"}
    assert sd["meta"].dtype == torch.uint8 and sd["values"].shape == (12, 10)
    other = SparseLinear(40, 12, n=2, m=8)
    other.load_state_dict(sd)
    x = torch.randn(5, 40)
    assert torch.equal(other(x), sl(x))
    with pytest.raises(RuntimeError, match="2:8 weight, this module is 4:16"):
        SparseLinear(48, 12, n=4, m=16).load_state_dict(roundtrip(SparseLinear(48, 12, n=2, m=8)))


def test_format_version_from_the_future_is_refused():
    sd = roundtrip(SparseLinear(16, 4))
    sd["format_version"] = torch.tensor(99, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="format version 99"):
        SparseLinear(16, 4).load_state_dict(sd)


def test_sparse_linear_rejects_bad_sizes():
    with pytest.raises(ValueError, match="in_features=30 must be a multiple of m=4"):
        SparseLinear(30, 8)
    with pytest.raises(ValueError, match="in_features=12 must be a multiple of m=8"):
        SparseLinear.from_dense(nn.Linear(12, 4), 2, 8)
    with pytest.raises(ValueError, match="1 <= n < m <= 16"):
        SparseLinear(16, 4, n=4, m=4)


def test_sparse_linear_repr():
    r = repr(SparseLinear(16, 4))
    assert "in_features=16" in r and "sparsity=2:4" in r and "backend=" in r


# ---------------------------------------------------------------- QLinear


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_qlinear_close_to_float(mode, dtype):
    torch.manual_seed(0)
    lin = nn.Linear(96, 40)
    q = QLinear.from_float(lin, mode)
    x = torch.randn(4, 3, 96)
    y = q(x.to(dtype))
    assert y.dtype == dtype and y.shape == (4, 3, 40)
    assert rel_err(y, lin(x).detach()) < 2e-2
    # exactly the dequantized weight's function (up to the activation rounding for dynamic)
    assert rel_err(q.to_float()(x).detach(), lin(x).detach()) < 1e-2


def test_qlinear_weight_is_per_channel_symmetric():
    lin = nn.Linear(32, 8)
    with torch.no_grad():
        lin.weight[3] *= 100
    q = QLinear.from_float(lin)
    assert q.wq.dtype == torch.int8 and q.w_scale.shape == (8,)
    assert torch.allclose(q.w_scale, lin.weight.detach().abs().amax(1) / 127)
    assert int(q.wq.abs().amax(1).min()) == 127


def test_qlinear_state_dict_roundtrip():
    lin = nn.Linear(32, 8)
    q = QLinear.from_float(lin, "weight_only")
    sd = roundtrip(q)
    assert set(sd) == {"wq", "w_scale", "bias", "format_version"}
    other = QLinear(32, 8, mode="weight_only")
    other.load_state_dict(sd)
    x = torch.randn(2, 32)
    assert torch.equal(other(x), q(x))


def test_qlinear_without_bias_and_bad_mode():
    q = QLinear.from_float(nn.Linear(16, 4, bias=False))
    assert q(torch.randn(2, 16)).shape == (2, 4)
    with pytest.raises(ValueError, match="mode must be one of"):
        QLinear(16, 4, mode="int4")
    assert "mode=dynamic" in repr(q)


# ---------------------------------------------------------------- DWSeparableConv2d


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return bn


@pytest.mark.parametrize("k,stride,dil", [(3, 1, 1), (3, 2, 1), (5, 1, 1), (3, 1, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dwsep_from_float_folds_batchnorm(k, stride, dil, channels_last):
    torch.manual_seed(0)
    C, Cout = 12, 20
    pad = dil * (k // 2)
    dw = nn.Conv2d(C, C, k, stride, pad, dilation=dil, groups=C, bias=False)
    pw = nn.Conv2d(C, Cout, 1, bias=False)
    dw_bn, pw_bn = _bn(C), _bn(Cout)
    ref_model = nn.Sequential(dw, dw_bn, nn.ReLU6(), pw, pw_bn, nn.ReLU()).eval()
    fused = DWSeparableConv2d.from_float(dw, pw, dw_bn, pw_bn, "relu6", "relu")
    x = torch.randn(2, C, 15, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = fused(x)
    assert rel_err(y, ref_model(x).detach()) < 1e-5
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_dwsep_module_trains():
    torch.manual_seed(0)
    mod = DWSeparableConv2d(8, 16)
    opt = torch.optim.SGD(mod.parameters(), lr=0.05)
    x, target = torch.randn(4, 8, 8, 8), torch.randn(4, 16, 8, 8)
    first = None
    for _ in range(10):
        opt.zero_grad()
        loss = nn.functional.mse_loss(mod(x), target)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first


def test_dwsep_state_dict_roundtrip_and_repr():
    mod = DWSeparableConv2d(8, 16, kernel_size=5, padding=2, dw_activation="relu", pw_activation="relu6")
    sd = roundtrip(mod)
    assert set(sd) == {"dw_weight", "dw_bias", "pw_weight", "pw_bias", "format_version"}
    other = DWSeparableConv2d(8, 16, kernel_size=5, padding=2, dw_activation="relu", pw_activation="relu6")
    other.load_state_dict(sd)
    x = torch.randn(1, 8, 9, 9)
    assert torch.equal(other(x), mod(x))
    assert "kernel_size=(5, 5)" in repr(mod) and "pw_activation=relu6" in repr(mod)


def test_dwsep_from_float_rejects_non_separable_pairs():
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    with pytest.raises(ValueError, match="not depthwise"):
        DWSeparableConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1))
    with pytest.raises(ValueError, match="1x1 with stride 1"):
        DWSeparableConv2d.from_float(dw, nn.Conv2d(8, 4, 3))
    with pytest.raises(ValueError, match="padding_mode"):
        DWSeparableConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect"), nn.Conv2d(8, 4, 1))
    with pytest.raises(ValueError, match="dw_activation must be one of"):
        DWSeparableConv2d(8, 4, dw_activation="gelu")


# ---------------------------------------------------------------- any device, compile


def test_modules_load_on_cpu_from_meta_built_copies():
    # the canonical state is plain tensors: loading works after .to(dtype) and across module instances
    sl = SparseLinear(16, 8)
    sd = {k: v.clone() for k, v in sl.state_dict().items()}
    fresh = SparseLinear(16, 8).to("cpu")
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.values, sl.values)


class _Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = DWSeparableConv2d(8, 16)
        self.sparse = SparseLinear(16, 32)
        self.q = QLinear.from_float(nn.Linear(32, 8))
        self.qw = QLinear.from_float(nn.Linear(8, 4), "weight_only")

    def forward(self, x):
        x = self.conv(x).mean((2, 3))
        return self.qw(self.q(self.sparse(x)))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_with_every_module(backend):
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = _Holder().eval()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True, backend=backend)(x)
    assert torch.allclose(eager, compiled, atol=1e-5, rtol=1e-5)


def test_torch_compile_trains_through_sparse_and_dwsep():
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = nn.Sequential(DWSeparableConv2d(4, 8), nn.Flatten(), SparseLinear(8 * 6 * 6, 4))
    x = torch.randn(2, 4, 6, 6)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    compiled(x).square().sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model(x).square().sum().backward()
    for name, p in model.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-5, rtol=1e-4), name


def test_backend_reference_gives_the_same_module_outputs():
    torch.manual_seed(0)
    model = _Holder().eval()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        native = model(x)
        effdl.set_backend("reference")
        try:
            ref = model(x)
        finally:
            effdl.set_backend("auto")
    assert rel_err(native, ref) < 1e-4


def test_qlinear_keeps_fp32_scales_through_half_and_bfloat16():
    torch.manual_seed(0)
    lin = nn.Linear(32, 8)
    for cast in (torch.bfloat16, torch.float16):
        q = QLinear.from_float(lin)
        scale = q.w_scale.clone()
        q = q.to(cast)
        assert q.w_scale.dtype == torch.float32 and torch.equal(q.w_scale, scale)
        assert q.bias.dtype == torch.float32 and q.wq.dtype == torch.int8
        y = q(torch.randn(2, 32, dtype=cast))
        assert y.dtype == cast


def test_dwsep_without_bias_and_fp64_batchnorm_folding():
    torch.manual_seed(0)
    mod = DWSeparableConv2d(4, 8, bias=False)
    assert mod.dw_bias is None and mod.pw_bias is None
    assert mod(torch.randn(1, 4, 5, 5)).shape == (1, 8, 5, 5)
    dw = nn.Conv2d(4, 4, 3, padding=1, groups=4).double()
    pw = nn.Conv2d(4, 8, 1).double()
    bn = _bn(4).double()
    fused = DWSeparableConv2d.from_float(dw, pw, dw_bn=bn, dw_activation="none")
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(fused(x), pw(bn(dw(x)))) < 1e-12
