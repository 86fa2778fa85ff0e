"""``effdl.nn.SparseQLinear`` (N:M sparse + int8) and ``quantize_(sparsify_(model))``.

The module against the op references (both modes), its canonical state and its
round trip, the per-channel scale taken over the kept weights, the conversions,
and the accuracy of a 2:4-trained digits MLP after int8 quantization.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from digits import accuracy, train_loader
from samples import rand
from torch import nn

import effdl
from effdl import convert, formats, reference, training
from effdl.nn import QLinear, SparseLinear, SparseQLinear

STATE_KEYS = {"values_q", "meta", "w_scale", "bias", "nm_pattern", "format_version"}


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _sparse(in_f=32, out_f=12, n=2, m=4, bias=True, seed=0) -> SparseLinear:
    torch.manual_seed(seed)
    return SparseLinear.from_dense(nn.Linear(in_f, out_f, bias=bias), n, m)


# ---------------------------------------------------------------- construction and format


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (3, 7)])
def test_from_sparse_buffers_and_scale_over_kept_values(n, m):
    sp = _sparse(in_f=4 * m, out_f=9, n=n, m=m)
    mod = SparseQLinear.from_sparse(sp)
    kept = 4 * m // m * n
    assert mod.values_q.dtype == torch.int8 and mod.values_q.shape == (9, kept)
    assert mod.meta.dtype == torch.uint8 and torch.equal(mod.meta, sp.meta)
    assert mod.w_scale.dtype == torch.float32 and mod.w_scale.shape == (9,)
    assert mod.bias.dtype == torch.float32 and torch.equal(mod.bias, sp.bias.detach())
    assert mod.nm_pattern.tolist() == [n, m] and int(mod.format_version) == 1
    values = sp.values.detach()
    # symmetric per channel, over the kept values: max|kept| / 127, q = round(v / scale)
    expected_scale = values.abs().amax(1) / 127
    assert torch.equal(mod.w_scale, expected_scale)
    assert torch.equal(mod.values_q, torch.round(values / expected_scale[:, None]).to(torch.int8))
    assert int(mod.values_q.abs().amax(1).min()) == 127  # every row uses the full int8 range
    assert (mod.dequantized_values() - values).abs().le(mod.w_scale[:, None] / 2 + 1e-7).all()


def test_custom_pattern_is_kept_and_scaled_over_its_values():
    """A weight already N:M by a pattern other than magnitude (the row's largest weight,
    100, is not kept) is not re-pruned, and the scale comes from the kept weights only."""
    w = torch.tensor([[100.0, 1.0, 0.5, 0.25, 2.0, -3.0, 0.1, 0.2]])
    keep = torch.tensor([[False, True, True, False, True, True, False, False]])  # 100 is not kept
    lin = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w * keep)
    mod = SparseQLinear.from_float(lin)
    assert mod.w_scale.item() == pytest.approx(3.0 / 127, rel=1e-7)
    assert torch.equal(mod.dequantized_weight() != 0, keep)


def test_from_float_prunes_by_magnitude_first():
    torch.manual_seed(1)
    lin = nn.Linear(16, 6)
    mod = SparseQLinear.from_float(lin, 2, 4)
    mask = formats.nm_mask(lin.weight.detach(), 2, 4)
    dense = mod.dequantized_weight()
    assert torch.equal(dense != 0, mask)
    pruned = lin.weight.detach() * mask
    assert torch.equal(mod.w_scale, pruned.abs().amax(1) / 127)
    assert (dense - pruned).abs().max() <= mod.w_scale.max() / 2 + 1e-7


def test_fresh_module_computes_the_bias():
    mod = SparseQLinear(8, 3)
    with torch.no_grad():
        mod.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x = rand(4, 8)
    assert torch.equal(mod(x), mod.bias.expand(4, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"in_features=10 must be a multiple of m=4"):
        SparseQLinear(10, 4)
    with pytest.raises(ValueError, match=r"mode must be one of \('dynamic', 'weight_only'\), got 'int4'"):
        SparseQLinear(8, 4, mode="int4")
    with pytest.raises(ValueError, match=r"1 <= n < m <= 16"):
        SparseQLinear(8, 4, n=4, m=4)
    with pytest.raises(TypeError, match=r"expected an effdl.nn.SparseLinear, got Linear"):
        SparseQLinear.from_sparse(nn.Linear(8, 4))


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 32), (3, 5, 32), (40, 32)], ids=["decode", "batched", "packed"])
def test_dynamic_forward_matches_reference(dtype, shape):
    mod = SparseQLinear.from_sparse(_sparse())
    x = rand(*shape, dtype=dtype)
    out = mod(x)
    assert out.dtype == dtype and out.shape == (*shape[:-1], 12)
    q, q_scale = reference.quantize_rows(x)
    ref = reference.nm_int8_linear(q, q_scale, mod.values_q, mod.meta, 2, 4, mod.w_scale, mod.bias, dtype)
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    else:
        assert _rel_err(out, ref) < 1e-2
    # and near the float layer it came from (int8 error of weights and activations)
    assert _rel_err(out.float(), mod.to_float()(x.float()).detach()) < 2e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_only_forward_matches_reference(dtype):
    sp = _sparse()
    mod = SparseQLinear.from_sparse(sp, mode="weight_only")
    x = rand(7, 32, dtype=dtype)
    out = mod(x)
    ref = reference.nm_linear(x.double(), mod.dequantized_values().double(), mod.meta, 2, 4, mod.bias.double())
    assert out.dtype == dtype
    assert _rel_err(out, ref) < (1e-6 if dtype == torch.float32 else 1e-2)


def test_to_float_and_to_sparse_compute_the_same():
    mod = SparseQLinear.from_sparse(_sparse(), mode="weight_only")
    x = rand(6, 32)
    lin, sp = mod.to_float(), mod.to_sparse()
    assert torch.equal(lin.weight.detach(), mod.dequantized_weight())
    assert torch.equal(sp.meta, mod.meta) and torch.equal(sp.values.detach(), mod.dequantized_values())
    with torch.no_grad():
        torch.testing.assert_close(lin(x), mod(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sp(x), mod(x), rtol=1e-6, atol=1e-6)


def test_half_keeps_scales_fp32():
    mod = SparseQLinear.from_sparse(_sparse()).half()
    assert mod.w_scale.dtype == torch.float32 and mod.bias.dtype == torch.float32
    assert mod.values_q.dtype == torch.int8 and mod.meta.dtype == torch.uint8
    assert mod(rand(2, 32, dtype=torch.float16)).dtype == torch.float16


# ---------------------------------------------------------------- state


def test_state_dict_round_trip():
    mod = SparseQLinear.from_sparse(_sparse(n=4, m=8), mode="dynamic")
    state = mod.state_dict()
    assert set(state) == STATE_KEYS
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = SparseQLinear(32, 12, n=4, m=8)
    fresh.load_state_dict(torch.load(buf))
    x = rand(5, 32)
    assert torch.equal(fresh(x), mod(x))
    for key in STATE_KEYS:
        assert torch.equal(fresh.state_dict()[key], state[key])


def test_state_dict_refuses_other_pattern_and_newer_format():
    state = SparseQLinear.from_sparse(_sparse(n=2, m=4)).state_dict()
    with pytest.raises(RuntimeError, match=r"SparseQLinear: state holds a 2:4 weight, this module is 1:4"):
        SparseQLinear(32, 12, n=1, m=4).load_state_dict(state)
    state["format_version"] = torch.tensor(99, dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r"saved with format version 99"):
        SparseQLinear(32, 12).load_state_dict(state)


def test_repr():
    text = repr(SparseQLinear.from_sparse(_sparse(), mode="weight_only"))
    assert "SparseQLinear(in_features=32, out_features=12, bias=True, sparsity=2:4, mode=weight_only" in text
    assert "weight=int8 per-channel" in text


# ---------------------------------------------------------------- conversion


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_quantize_sparsified_model(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 10), nn.Linear(10, 4)).eval()
    effdl.sparsify_(model, verbose=False)  # the last layer: 10 % 4 != 0, stays nn.Linear
    sparse = copy.deepcopy(model)
    effdl.quantize_(model, mode=mode, verbose=False)
    assert isinstance(model[0], SparseQLinear) and isinstance(model[2], SparseQLinear)
    assert model[0].mode == mode and isinstance(model[3], QLinear)
    assert [name for name, _ in convert.last_report.converted] == ["0", "2", "3"]
    for q_layer, s_layer in ((model[0], sparse[0]), (model[2], sparse[2])):
        assert torch.equal(q_layer.meta, s_layer.meta)
    x = rand(6, 32)
    with torch.no_grad():
        assert _rel_err(model(x), sparse(x)) < 3e-2


def test_quantize_skips_float64_sparse_layers():
    model = nn.Sequential(SparseLinear.from_dense(nn.Linear(8, 8).double()))
    effdl.quantize_(model, verbose=False)
    assert isinstance(model[0], SparseLinear)
    assert convert.last_report.skipped == [("0", "dtype torch.float64 unsupported by the int8 kernels")]


def test_digits_2to4_int8_accuracy():
    """An MLP trained 2:4-sparse on the digits keeps its accuracy once its kept weights
    and activations go int8 (measured: 93.6 % before and after, both modes)."""
    torch.manual_seed(0)
    model = effdl.sparsify_(_mlp(), verbose=False)
    training.train(model, train_loader(batch_size=64), epochs=6, lr=0.1)
    model.eval()
    sparse_acc = accuracy(model)
    weight_only = effdl.quantize_(copy.deepcopy(model), mode="weight_only", verbose=False)
    effdl.quantize_(model, verbose=False)
    assert all(isinstance(model[i], SparseQLinear) for i in (1, 3))
    int8_acc, w8_acc = accuracy(model), accuracy(weight_only)
    assert sparse_acc > 90.0
    assert abs(int8_acc - sparse_acc) <= 1.0, (sparse_acc, int8_acc)
    assert abs(w8_acc - sparse_acc) <= 1.0, (sparse_acc, w8_acc)
