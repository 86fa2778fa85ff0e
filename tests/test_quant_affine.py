"""effdl.quant formulas against hand-computed values, the STE gradient, and bad inputs."""

from __future__ import annotations

import pytest
import torch

import effdl
from effdl.quant import QParams, QScheme, compute_qparams, dequantize_tensor, fake_quantize, quantize_tensor
from effdl.reference import QUANT_SCALE_EPS


def test_asymmetric_per_tensor_by_hand():
    t = torch.tensor([-1.0, 0.0, 0.5, 3.0])
    q, scale, min_val = quantize_tensor(t, num_bits=8)
    # scale = (3 - (-1)) / 255; q = round((t + 1) / scale) = round([0, 63.75, 95.625, 255])
    assert q.dtype == torch.uint8
    assert q.tolist() == [0, 64, 96, 255]
    assert scale.item() == pytest.approx(4 / 255)
    assert min_val.item() == -1.0
    back = dequantize_tensor(q, scale, min_val)
    assert torch.allclose(back, torch.tensor([-1.0, 64 * 4 / 255 - 1, 96 * 4 / 255 - 1, 3.0]), atol=1e-6)
    assert (back - t).abs().max() <= scale / 2 + 1e-7


def test_asymmetric_two_bits_by_hand():
    q, scale, min_val = quantize_tensor(torch.tensor([-1.0, 0.0, 0.5, 3.0]), num_bits=2)
    # scale = 4 / 3; (t + 1) / scale = [0, 0.75, 1.125, 3]
    assert q.tolist() == [0, 1, 1, 3]
    assert scale.item() == pytest.approx(4 / 3)
    assert min_val.item() == -1.0


@pytest.mark.parametrize("value", [2.5, -7.25, 0.0, 1e-30])
def test_constant_tensor_round_trips_exactly(value):
    t = torch.full((3, 5), value)
    q, scale, min_val = quantize_tensor(t)
    assert scale.item() == QUANT_SCALE_EPS
    assert (q == 0).all()
    assert torch.equal(dequantize_tensor(q, scale, min_val), t)


def test_constant_channels_round_trip_exactly_per_channel():
    t = torch.tensor([[1.5, 1.5, 1.5], [-2.0, 0.0, 4.0]])
    q, scale, min_val = quantize_tensor(t, axis=0)
    assert scale[0].item() == QUANT_SCALE_EPS and scale[1].item() == pytest.approx(6 / 255)
    back = dequantize_tensor(q, scale, min_val, axis=0)
    assert torch.equal(back[0], t[0])
    assert back[1, 0].item() == -2.0


def test_symmetric_per_tensor_by_hand():
    t = torch.tensor([-1.27, 0.5, 0.0049, 1.0])
    q, scale, min_val = quantize_tensor(t, 8, symmetric=True)
    # scale = 1.27 / 127 = 0.01; t / scale = [-127, 50, 0.49, 100]
    assert q.dtype == torch.int8
    assert q.tolist() == [-127, 50, 0, 100]
    assert scale.item() == pytest.approx(0.01)
    assert min_val.item() == 0.0


def test_symmetric_clamps_and_rounds_half_to_even():
    qp = QParams(torch.tensor(0.5), torch.tensor(0.0), QScheme(4, symmetric=True))
    t = torch.tensor([-10.0, 0.25, 0.75, 1.25, 3.0, 10.0])
    # t / 0.5 = [-20, 0.5, 1.5, 2.5, 6, 20]; half to even, then clamp to [-7, 7]
    assert qp.quantize(t).tolist() == [-7, 0, 2, 2, 6, 7]
    assert qp.dequantize(qp.quantize(t)).tolist() == [-3.5, 0.0, 1.0, 1.0, 3.0, 3.5]


def test_asymmetric_clamps_outside_the_range():
    qp = QParams(torch.tensor(0.5), torch.tensor(-1.0), QScheme(2))
    assert qp.quantize(torch.tensor([-5.0, -1.0, 0.4, 9.0])).tolist() == [0, 0, 3, 3]
    lo, hi = qp.clip_range()
    assert (lo.item(), hi.item()) == (-1.0, 0.5)


def test_per_channel_by_hand():
    t = torch.tensor([[0.0, 1.0, 2.0, 3.0], [-4.0, 0.0, 4.0, 8.0]])
    q, scale, min_val = quantize_tensor(t, axis=0)
    assert scale.shape == (2,) and min_val.shape == (2,)
    assert scale.tolist() == pytest.approx([3 / 255, 12 / 255])
    assert min_val.tolist() == [0.0, -4.0]
    assert q.tolist() == [[0, 85, 170, 255], [0, 85, 170, 255]]
    # the same along the other axis, and with a negative axis
    qt, scale_t, min_t = quantize_tensor(t.t().contiguous(), axis=-1)
    assert torch.equal(qt, q.t()) and torch.equal(scale_t, scale) and torch.equal(min_t, min_val)
    assert torch.allclose(dequantize_tensor(q, scale, min_val, axis=0), t, atol=6 / 255)


def test_per_channel_symmetric_is_qlinears_weight_format():
    w = torch.randn(37, 50) * torch.rand(37, 1) * 3
    q, scale, min_val = quantize_tensor(w, 8, symmetric=True, axis=0)
    ql = effdl.nn.QLinear.from_float(_linear_with(w))  # the kernel's quantize_rows
    assert torch.equal(q, ql.wq)
    assert torch.equal(scale, ql.w_scale)
    assert (min_val == 0).all()


def _linear_with(w: torch.Tensor) -> torch.nn.Linear:
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin


def test_per_channel_4d_weight():
    w = torch.randn(8, 3, 3, 3)
    q, scale, _ = quantize_tensor(w, 4, symmetric=True, axis=0)
    assert scale.shape == (8,)
    assert torch.allclose(scale, w.abs().amax((1, 2, 3)) / 7)
    assert q.abs().max() == 7 and q.dtype == torch.int8


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_round_trip_error_is_at_most_half_a_step(bits):
    t = torch.randn(64, 33)
    for symmetric in (False, True):
        for axis in (None, 0, 1):
            q, scale, min_val = quantize_tensor(t, bits, symmetric=symmetric, axis=axis)
            back = dequantize_tensor(q, scale, min_val, axis=axis)
            step = scale if axis is None else scale.unsqueeze(1 - axis)
            assert ((back - t).abs() <= step / 2 * (1 + 1e-5)).all()
            assert int(q.min()) >= (-(2 ** (bits - 1) - 1) if symmetric else 0)
            assert int(q.max()) <= (2 ** (bits - 1) - 1 if symmetric else 2**bits - 1)


def test_float64_and_half_inputs():
    t64 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    _, scale, _ = quantize_tensor(t64)
    assert scale.dtype == torch.float64
    q, scale, _ = quantize_tensor(torch.tensor([0.0, 1.0, 2.0], dtype=torch.bfloat16))
    assert scale.dtype == torch.float32 and q[0] == 0 and q[2] == 255


def test_fake_quantize_forward_and_ste_gradient_by_hand():
    qp = QParams(torch.tensor(0.5), torch.tensor(-1.0), QScheme(2))  # grid -1, -0.5, 0, 0.5
    t = torch.tensor([-2.0, -1.0, -0.3, 0.5, 0.6], requires_grad=True)
    out = fake_quantize(t, qp)
    # (t + 1) / 0.5 = [-2, 0, 1.4, 3, 3.2] -> round, clamp to [0, 3] -> [0, 0, 1, 3, 3]
    assert out.tolist() == [-1.0, -1.0, -0.5, 0.5, 0.5]
    out.backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    # the gradient passes inside the clipping range [-1, 0.5] (ends included), zero outside
    assert t.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 0.0]


def test_fake_quantize_per_channel_gradient():
    qp = QParams(torch.tensor([1.0, 0.1]), torch.tensor([0.0, 0.0]), QScheme(8, symmetric=True, axis=0))
    t = torch.tensor([[50.0, 200.0], [5.0, 20.0]], requires_grad=True)
    out = fake_quantize(t, qp)
    assert out.flatten().tolist() == pytest.approx([50.0, 127.0, 5.0, 12.7])
    out.sum().backward()
    assert t.grad.tolist() == [[1.0, 0.0], [1.0, 0.0]]


def test_fake_quantize_equals_quantize_then_dequantize():
    t = torch.randn(5, 7)
    qp = compute_qparams(t, 3, axis=1)
    assert torch.equal(fake_quantize(t, qp), qp.dequantize(qp.quantize(t)))


# -- bad inputs


@pytest.mark.parametrize("bits", [0, 1, 9, 16, 8.0, True, "8"])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="num_bits"):
        quantize_tensor(torch.randn(4), num_bits=bits)


def test_empty_tensor_raises():
    with pytest.raises(ValueError, match="empty"):
        quantize_tensor(torch.empty(0))
    with pytest.raises(ValueError, match="empty"):
        quantize_tensor(torch.empty(3, 0), axis=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_raises(bad):
    t = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_tensor(t)


@pytest.mark.parametrize("axis", [2, -3, 1.5])
def test_axis_out_of_range(axis):
    with pytest.raises(ValueError, match="axis"):
        quantize_tensor(torch.randn(3, 4), axis=axis)


def test_integer_tensor_raises():
    with pytest.raises(ValueError, match="floating-point"):
        quantize_tensor(torch.arange(4))


def test_range_too_wide_raises():
    big = torch.finfo(torch.float32).max
    with pytest.raises(ValueError, match="too wide"):
        quantize_tensor(torch.tensor([-big, big]))


def test_dequantize_bad_arguments():
    q, scale, min_val = quantize_tensor(torch.randn(3, 4), axis=0)
    with pytest.raises(ValueError, match="axis"):
        dequantize_tensor(q, scale, min_val)
    with pytest.raises(ValueError, match="uint8 or int8"):
        dequantize_tensor(q.float(), scale, min_val, axis=0)
    with pytest.raises(ValueError, match="same shape"):
        dequantize_tensor(q, scale, min_val[:1], axis=0)
    with pytest.raises(ValueError, match="channels"):
        dequantize_tensor(q, scale, min_val, axis=1)
