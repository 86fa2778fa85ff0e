"""Gradients of the differentiable ops: nm_linear (x, values, bias) and dwsep_conv2d.

``gradcheck`` in float64 against finite differences, then the gradients of every
sample against autograd through the pure-PyTorch reference.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from samples import DIFF_ARGNUMS, nm_pack, nm_weight, rand, sample_inputs, strided

from effdl import formats, reference

E = torch.ops.effdl
F64 = torch.float64


def _leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone().requires_grad_(True)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    denom = b.norm().item()
    return (a - b).norm().item() / (denom if denom > 0 else 1.0)


def _grads(fn, args: tuple, argnums: tuple[int, ...], grad_out: torch.Tensor | None = None):
    """Output and gradients of fn(*args) wrt args[argnums] (None where an arg is None)."""
    args = list(args)
    leaves = []
    for i in argnums:
        args[i] = _leaf(args[i])
        if args[i] is not None:
            leaves.append(args[i])
    out = fn(*args)
    g = torch.randn_like(out) if grad_out is None else grad_out.to(out.dtype)
    grads = torch.autograd.grad(out, leaves, g, allow_unused=True) if leaves else ()
    it = iter(grads)
    return out, g, [None if args[i] is None else next(it) for i in argnums]


# ---------------------------------------------------------------- nm_linear


NM_GRADCHECK = [
    pytest.param(2, 4, (3, 8), 4, True, id="2:4-M3-gather-bias"),
    pytest.param(2, 4, (2, 3, 8), 5, False, id="2:4-batch-packed"),
    pytest.param(1, 4, (7, 12), 3, True, id="1:4-M7-packed"),
    pytest.param(4, 8, (2, 16), 3, True, id="4:8"),
    pytest.param(3, 7, (5, 14), 2, False, id="3:7"),
]


@pytest.mark.parametrize(("n", "m", "x_shape", "N", "with_bias"), NM_GRADCHECK)
def test_nm_linear_gradcheck(n, m, x_shape, N, with_bias):
    K = x_shape[-1]
    values, meta = nm_pack(nm_weight(N, K, n, m, F64), n, m)
    x = _leaf(rand(*x_shape, dtype=F64))
    v = _leaf(values)
    b = _leaf(rand(N, dtype=F64)) if with_bias else None
    inputs = (x, v) if b is None else (x, v, b)

    def fn(x, v, b=None):
        return E.nm_linear(x, v, meta, n, m, b)

    assert torch.autograd.gradcheck(fn, inputs)


def test_nm_linear_gradcheck_noncontiguous_x():
    values, meta = nm_pack(nm_weight(3, 8, 2, 4, F64), 2, 4)
    x = _leaf(strided(rand(6, 8, dtype=F64), "t"))
    assert not x.is_contiguous()
    assert torch.autograd.gradcheck(lambda x, v: E.nm_linear(x, v, meta, 2, 4, None), (x, _leaf(values)))


@pytest.mark.parametrize("M", [3, 9])
def test_nm_linear_values_grad_is_dense_grad_at_kept_positions(M):
    n, m, N, K = 2, 4, 6, 16
    w = nm_weight(N, K, n, m, F64)
    values, meta = nm_pack(w, n, m)
    x = rand(M, K, dtype=F64)
    g = rand(M, N, dtype=F64)
    _, _, (gx, gv) = _grads(lambda x, v: E.nm_linear(x, v, meta, n, m, None), (x, values), (0, 1), g)
    dense = w.clone().requires_grad_(True)
    (gw,) = torch.autograd.grad(torch.nn.functional.linear(x, dense), dense, g)
    cols = formats.kept_columns(meta, K, n, m)
    torch.testing.assert_close(gv, gw.gather(1, cols), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, g @ w, rtol=1e-12, atol=1e-12)
    # the explicit zeros a short group keeps are trainable positions too: they get their gradient
    assert (values == 0).any()
    kept_zero = values == 0
    torch.testing.assert_close(gv[kept_zero], gw.gather(1, cols)[kept_zero])


@pytest.mark.parametrize("which", [(0,), (1,), (5,), (0, 5)], ids=["x", "values", "bias", "x+bias"])
def test_nm_linear_partial_requires_grad(which):
    values, meta = nm_pack(nm_weight(4, 8, 2, 4), 2, 4)
    args = (rand(5, 8), values, meta, 2, 4, rand(4))
    _, g, grads = _grads(E.nm_linear, args, which)
    _, _, ref = _grads(reference.nm_linear, args, which, g)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _sample_params(op: str):
    for dtype, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        for i in range(sum(1 for _ in sample_inputs(op, "cpu", dtype))):
            yield pytest.param(dtype, i, id=f"{name}-{i}")


def _check_grads(names, grads, ref, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for name, a, b in zip(names, grads, ref, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == dtype and a.shape == b.shape, name
            assert not a.isnan().any(), name
            assert rel_err(a, b) <= tol, (name, rel_err(a, b))


@pytest.mark.parametrize(("dtype", "index"), list(_sample_params("nm_linear")))
def test_nm_linear_grads_vs_reference(dtype, index):
    args = next(itertools.islice(sample_inputs("nm_linear", "cpu", dtype), index, None))
    x, values, meta, n, m, bias = args
    _, g, grads = _grads(E.nm_linear, args, DIFF_ARGNUMS["nm_linear"])
    # contiguous meta: the reference cannot unpack a strided one (see test_ops.py)
    ref_args = (x.double(), values.double(), meta.contiguous(), n, m, None if bias is None else bias.double())
    _, _, ref = _grads(reference.nm_linear, ref_args, DIFF_ARGNUMS["nm_linear"], g)
    _check_grads(("x", "values", "bias"), grads, ref, dtype)


def test_nm_linear_backward_strided_meta():
    """The forward accepts a non-contiguous meta; so must the backward."""
    values, meta = nm_pack(nm_weight(4, 16, 2, 4), 2, 4)
    strided_meta = strided(meta, "t")
    x = rand(3, 16)
    _, g, grads = _grads(lambda x, v: E.nm_linear(x, v, strided_meta, 2, 4), (x, values), (0, 1))
    _, _, ref = _grads(lambda x, v: E.nm_linear(x, v, meta, 2, 4), (x, values), (0, 1), g)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- dwsep_conv2d


def _dwsep_args(B, C, H, W, k, Cout, stride, padding, dilation, dw_act, pw_act, dtype=F64, channels_last=False,
                biases=(True, True), x_scale=1.0):
    x = rand(B, C, H, W, dtype=dtype, scale=x_scale)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, rand(C, 1, k, k, dtype=dtype, scale=0.5), rand(C, dtype=dtype) if biases[0] else None,
            rand(Cout, C, 1, 1, dtype=dtype, scale=0.5), rand(Cout, dtype=dtype) if biases[1] else None,
            list(stride), list(padding), list(dilation), dw_act, pw_act)


DWSEP_GRADCHECK = [
    # small outputs: full gradcheck runs one backward per output element
    pytest.param(dict(B=2, C=2, H=4, W=3, k=3, Cout=2, stride=(1, 1), padding=(1, 1), dilation=(1, 1)), id="3x3-s1-p1"),
    pytest.param(dict(B=1, C=3, H=7, W=6, k=3, Cout=2, stride=(2, 2), padding=(1, 1), dilation=(2, 2),
                      channels_last=True), id="3x3-s2-d2-nhwc"),
    pytest.param(dict(B=1, C=2, H=6, W=6, k=5, Cout=3, stride=(1, 2), padding=(2, 0), dilation=(1, 1),
                      biases=(False, True)), id="5x5-asym-no-dw-bias"),
    pytest.param(dict(B=2, C=2, H=4, W=5, k=3, Cout=3, stride=(2, 1), padding=(0, 2), dilation=(1, 1),
                      biases=(False, False), channels_last=True), id="3x3-no-bias-nhwc"),
]


@pytest.mark.parametrize("conf", DWSEP_GRADCHECK)
def test_dwsep_conv2d_gradcheck(conf):
    """No activation: the op is smooth, so finite differences are exact up to rounding."""
    args = _dwsep_args(**conf, dw_act="none", pw_act="none")
    idx = [i for i in DIFF_ARGNUMS["dwsep_conv2d"] if args[i] is not None]
    inputs = tuple(_leaf(args[i]) for i in idx)

    def fn(*diff):
        full = list(args)
        for i, t in zip(idx, diff, strict=True):
            full[i] = t
        return E.dwsep_conv2d(*full)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("dw_act", reference.ACTIVATIONS)
@pytest.mark.parametrize("pw_act", reference.ACTIVATIONS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_dwsep_conv2d_activation_grads_vs_reference(dw_act, pw_act, channels_last):
    """relu / relu6 gradients against autograd through the reference, in float64; x is
    scaled so that pre-activations fall on both sides of 0 and of 6."""
    args = _dwsep_args(2, 4, 6, 5, 3, 5, (1, 1), (1, 1), (1, 1), dw_act, pw_act, channels_last=channels_last,
                       x_scale=6.0)
    out, g, grads = _grads(E.dwsep_conv2d, args, DIFF_ARGNUMS["dwsep_conv2d"])
    ref_out, _, ref = _grads(reference.dwsep_conv2d, args, DIFF_ARGNUMS["dwsep_conv2d"], g)
    if pw_act == "relu6":
        assert (ref_out == 6).any() and (ref_out == 0).any()
    if pw_act == "relu":
        assert (ref_out == 0).any()
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(("x", "dw_weight", "dw_bias", "pw_weight", "pw_bias"), grads, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize(("dtype", "index"), list(_sample_params("dwsep_conv2d")))
def test_dwsep_conv2d_grads_vs_reference(dtype, index):
    args = next(itertools.islice(sample_inputs("dwsep_conv2d", "cpu", dtype), index, None))
    _, g, grads = _grads(E.dwsep_conv2d, args, DIFF_ARGNUMS["dwsep_conv2d"])
    ref_args = tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args)
    _, _, ref = _grads(reference.dwsep_conv2d, ref_args, DIFF_ARGNUMS["dwsep_conv2d"], g)
    _check_grads(("x", "dw_weight", "dw_bias", "pw_weight", "pw_bias"), grads, ref, dtype)


@pytest.mark.parametrize(
    ("dtype", "x", "dw", "dw_bias", "pw_act"),
    [
        # fp32 pre-activation 5.984375 < 6, stored in bf16 as 6.0 (tie to even)
        pytest.param(torch.bfloat16, 5.96875, 1.0, 2.0**-6, "relu6", id="bf16-relu6-just-below-6"),
        # fp32 pre-activation 2^-26 > 0, stored in fp16 as 0
        pytest.param(torch.float16, 2.0**-14, 2.0**-12, 0.0, "relu", id="f16-relu-just-above-0"),
    ],
)
def test_dwsep_conv2d_16bit_activation_grad_uses_unrounded_value(dtype, x, dw, dw_bias, pw_act):
    """The forward computes in fp32 and rounds only the stored output; the gradient of the
    pointwise activation must follow the fp32 pre-activation (as autograd through the
    reference does), not the rounded output."""
    args = (torch.full((1, 1, 1, 1), x, dtype=dtype), torch.full((1, 1, 1, 1), dw, dtype=dtype),
            torch.full((1,), dw_bias, dtype=dtype), torch.ones(1, 1, 1, 1, dtype=dtype), None,
            [1, 1], [0, 0], [1, 1], "none", pw_act)
    g = torch.ones(1, 1, 1, 1, dtype=dtype)
    _, _, grads = _grads(E.dwsep_conv2d, args, (0, 1, 3), g)
    _, _, ref = _grads(reference.dwsep_conv2d, args, (0, 1, 3), g)
    assert ref[0].item() != 0  # the activation passes the gradient
    for name, a, b in zip(("x", "dw_weight", "pw_weight"), grads, ref, strict=True):
        assert a.item() == b.item(), name


def test_dwsep_conv2d_partial_requires_grad():
    args = _dwsep_args(1, 3, 5, 5, 3, 2, (1, 1), (1, 1), (1, 1), "relu", "relu6", dtype=torch.float32)
    for which in [(0,), (3,), (1, 4)]:
        _, g, grads = _grads(E.dwsep_conv2d, args, which)
        _, _, ref = _grads(reference.dwsep_conv2d, args, which, g)
        for a, b in zip(grads, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_int8_ops_are_not_differentiable():
    """Inference only: int8 inputs cannot carry gradients at all."""
    q = torch.ones(2, 4, dtype=torch.int8)
    with pytest.raises(RuntimeError, match="floating point"):
        q.requires_grad_(True)
