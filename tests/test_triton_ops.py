"""The Triton kernels (:mod:`effdl.triton`) against the pure-PyTorch reference.

CPU tensors run in triton's interpreter (``TRITON_INTERPRET=1``, which the
conftest sets where no GPU exists); the ``cuda``-marked tests run the compiled
kernels. The interpreter runs every program in Python, so the CPU tests use the
tiny sample shapes and a few dtypes per op; its block sizes are 16, so the
samples leave partial tiles in every dimension. In the interpreter ``tl.dot``
on bfloat16 operands returns garbage (DESIGN §5): bfloat16 is checked on CPU
only for the kernels without a float dot, and everywhere on a GPU.
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from samples import (
    DTYPES,
    NM_CASES,
    int8,
    nm_int8_pack,
    nm_int8_weight,
    nm_pack,
    nm_weight,
    rand,
    sample_inputs,
    scales,
    strided,
)
from test_errors import CASES
from test_ops import DTYPE_IDS, TOL, assert_bitwise_equal, assert_close_rel, check_linear_output, f64

from effdl import reference
from effdl.backends import TRITON_OPS

T = pytest.importorskip("effdl.triton")

INTERPRETER_REASON = "CPU tensors need triton's interpreter: TRITON_INTERPRET=1 before effdl.triton is imported"
interpreter = pytest.mark.skipif(not T.INTERPRETED, reason=INTERPRETER_REASON)
DEVICES = [pytest.param("cpu", marks=interpreter), pytest.param("cuda", marks=pytest.mark.cuda)]

# kernels whose product is a float tl.dot: no bfloat16 in the interpreter
FLOAT_DOT_OPS = {"nm_linear", "int8_weight_linear", "dwsep_conv2d"}
# samples per dtype other than float32 in the interpreter (float32: all of them)
CPU_OTHER_DTYPE_SAMPLES = 3


def _params(op: str):
    for dtype in DTYPES[op]:
        count = sum(1 for _ in sample_inputs(op, "cpu", dtype))
        for i in range(count):
            case = f"{DTYPE_IDS[dtype]}-{i}"
            yield pytest.param("cuda", dtype, i, id=f"cuda-{case}", marks=pytest.mark.cuda)
            bf16_dot = dtype == torch.bfloat16 and op in FLOAT_DOT_OPS
            if not bf16_dot and (dtype == torch.float32 or i < CPU_OTHER_DTYPE_SAMPLES):
                yield pytest.param("cpu", dtype, i, id=f"cpu-{case}", marks=interpreter)


def _sample(op: str, device: str, dtype: torch.dtype, index: int) -> tuple:
    return next(itertools.islice(sample_inputs(op, device, dtype), index, None))


# ---------------------------------------------------------------- every sample of every op


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("nm_compress")))
def test_nm_compress(device, dtype, index):
    w, n, m = _sample("nm_compress", device, dtype, index)
    values, meta = T.nm_compress(w, n, m)
    ref_values, ref_meta = nm_pack(w.cpu(), n, m)
    assert_bitwise_equal(values, ref_values)
    assert_bitwise_equal(meta, ref_meta)
    assert_bitwise_equal(T.nm_decompress(values, meta, n, m), w.contiguous())


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("nm_decompress")))
def test_nm_decompress(device, dtype, index):
    values, meta, n, m = _sample("nm_decompress", device, dtype, index)
    w = T.nm_decompress(values, meta, n, m)
    assert w.shape == (values.shape[0], values.shape[1] // n * m) and w.is_contiguous()
    if values.shape[0]:  # the reference cannot unpack 0 rows nor a strided meta
        assert_bitwise_equal(w, reference.nm_decompress(values, meta.contiguous(), n, m))


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("nm_linear")))
def test_nm_linear(device, dtype, index):
    x, values, meta, n, m, bias = _sample("nm_linear", device, dtype, index)
    out = T.nm_linear(x, values, meta, n, m, bias)
    check_linear_output(out, x, values.shape[0], dtype)
    ref = reference.nm_linear(f64(x), f64(values), meta.contiguous(), n, m, f64(bias))
    assert_close_rel(out, ref, TOL[dtype])


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("quantize_rows")))
def test_quantize_rows(device, dtype, index):
    (x,) = _sample("quantize_rows", device, dtype, index)
    q, scale = T.quantize_rows(x)
    ref_q, ref_scale = reference.quantize_rows(x)
    assert_bitwise_equal(q, ref_q)
    assert_bitwise_equal(scale, ref_scale)


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("int8_linear")))
def test_int8_linear(device, dtype, index):
    q, q_scale, wq, w_scale, bias, out_dtype = _sample("int8_linear", device, dtype, index)
    out = T.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    check_linear_output(out, q, wq.shape[0], out_dtype or torch.float32)
    ref = reference.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    if out.dtype == torch.float32:  # the reference's fp32 epilogue, up to an FMA's rounding
        atol = 1e-6 * (float(ref.abs().max()) if ref.numel() else 0.0)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=atol)
    else:
        assert_close_rel(out, ref, TOL[dtype])


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("nm_int8_linear")))
def test_nm_int8_linear(device, dtype, index):
    q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype = _sample("nm_int8_linear", device, dtype, index)
    out = T.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype)
    check_linear_output(out, q, values_q.shape[0], out_dtype or torch.float32)
    ref = reference.nm_int8_linear(q, q_scale, values_q, meta.contiguous(), n, m, w_scale, bias, out_dtype)
    if out.dtype == torch.float32:  # the reference's fp32 epilogue, up to an FMA's rounding
        atol = 1e-6 * (float(ref.abs().max()) if ref.numel() else 0.0)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=atol)
    else:
        assert_close_rel(out, ref, TOL[dtype])


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("int8_weight_linear")))
def test_int8_weight_linear(device, dtype, index):
    x, wq, w_scale, bias = _sample("int8_weight_linear", device, dtype, index)
    out = T.int8_weight_linear(x, wq, w_scale, bias)
    check_linear_output(out, x, wq.shape[0], dtype)
    ref = f64(x) @ (wq.double() * w_scale.double()[:, None]).t()
    assert_close_rel(out, ref if bias is None else ref + f64(bias), TOL[dtype])


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("dwsep_conv2d")))
def test_dwsep_conv2d(device, dtype, index):
    args = _sample("dwsep_conv2d", device, dtype, index)
    out = T.dwsep_conv2d(*args)
    ref = reference.dwsep_conv2d(*(f64(a) for a in args))
    assert out.dtype == dtype and out.stride() == ref.stride()  # channels_last in, channels_last out
    assert_close_rel(out, ref, TOL[dtype])


# ---------------------------------------------------------------- edges the samples do not reach


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("n", "m", "rows", "K"), NM_CASES, ids=[f"{n}:{m}-K{K}" for n, m, _, K in NM_CASES])
def test_nm_linear_every_pattern(device, n, m, rows, K):
    """Every N:M pattern class (2:4, 1:4, 4:8, 2:8, 5:16, odd 3:7) with M, N, K off the
    block sizes, leading batch dims, and the weight through the Triton compress."""
    w = nm_weight(rows, K, n, m, device=device)
    values, meta = T.nm_compress(w, n, m)
    x = rand(2, 9, K, device=device)
    bias = rand(rows, device=device)
    out = T.nm_linear(x, values, meta, n, m, bias)
    assert_close_rel(out, f64(x) @ f64(w).t() + f64(bias), TOL[torch.float32])


@pytest.mark.parametrize("device", DEVICES)
def test_nm_linear_k0(device):
    x, values = rand(2, 0, device=device), rand(3, 0, device=device)
    meta = torch.zeros(3, 0, dtype=torch.uint8, device=device)
    bias = rand(3, device=device)
    assert torch.equal(T.nm_linear(x, values, meta, 2, 4, bias), bias.expand(2, 3))


@interpreter
def test_nm_compress_keeps_nan():
    """NaN counts as nonzero: kept, and a group with it and n other nonzeros breaks the pattern."""
    nan = float("nan")
    w = torch.tensor([[nan, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 2.0, 0.0, 0.0, 0.0, nan, 0.0]])
    values, meta = T.nm_compress(w, 2, 4)
    assert values[0, 0].isnan() and values[0, 1] == 1.0 and values[1, 3].isnan()
    assert meta.tolist() == [[0b00111001], [0b01010101]]
    w[1, 4:6] = 3.0
    with pytest.raises(RuntimeError, match=r"row 1, group 1 \(columns 4..7\) has 3 nonzeros"):
        T.nm_compress(w, 2, 4)


@interpreter
def test_quantize_rows_rounds_half_to_even():
    x = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -127.0]])  # scale exactly 1
    q, scale = T.quantize_rows(x)
    assert scale.tolist() == [1.0]
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, -2, 3, -127]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES["quantize_rows"], ids=lambda d: DTYPE_IDS[d])
def test_quantize_rows_zero_row_and_k0(device, dtype):
    x = rand(3, 37, dtype=dtype, device=device, scale=1e3)
    x[1] = 0
    q, scale = T.quantize_rows(x)
    assert scale[1].item() == torch.finfo(torch.float32).tiny and not q[1].any()
    assert_bitwise_equal(q, reference.quantize_rows(x)[0])
    q0, scale0 = T.quantize_rows(torch.empty(2, 0, dtype=dtype, device=device))
    assert q0.shape == (2, 0) and scale0.tolist() == [torch.finfo(torch.float32).tiny] * 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("M", "K", "N"), [(1, 24, 5), (0, 16, 4), (7, 19, 3), (20, 70, 17)])
def test_int8_linear_exact_int32(device, M, K, N):
    """Unit scales, no bias: the exact integer product (below 2**24, exact in fp32)."""
    q, wq = int8(M, K, device=device), int8(N, K, device=device)
    out = T.int8_linear(q, torch.ones(M, device=device), wq, torch.ones(N, device=device))
    assert torch.equal(out, reference.int8_matmul_exact(q, wq).float())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("n", "m", "M", "K", "N"), [(2, 4, 1, 24, 5), (2, 4, 0, 16, 4), (2, 4, 20, 72, 17), (3, 7, 5, 21, 3)])
def test_nm_int8_linear_exact_int32(device, n, m, M, K, N):
    """Unit scales, no bias: the exact integer product of q and the dense N:M weight."""
    q, wq = int8(M, K, device=device), nm_int8_weight(N, K, n, m, device=device)
    values_q, meta = nm_int8_pack(wq.cpu(), n, m)
    out = T.nm_int8_linear(q, torch.ones(M, device=device), values_q.to(device), meta.to(device), n, m,
                           torch.ones(N, device=device))
    assert torch.equal(out, reference.int8_matmul_exact(q, wq).float())


@pytest.mark.cuda
def test_int8_linear_max_k_does_not_overflow():
    """The largest K the check admits, at the int32 extremes (too long for the interpreter)."""
    K = reference.INT8_MAX_K
    q = torch.full((1, K), -128, dtype=torch.int8, device="cuda")
    wq = torch.stack([torch.full((K,), -128, dtype=torch.int8), torch.full((K,), 127, dtype=torch.int8)]).cuda()
    out = T.int8_linear(q, torch.ones(1, device="cuda"), wq, torch.ones(2, device="cuda"))
    assert out.tolist() == [[float(K * 128 * 128), float(-K * 128 * 127)]]


@pytest.mark.cuda
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_int8_linear_output_cast_rounds_like_torch(out_dtype):
    """q = wq = w_scale = 1: the output is q_scale cast to out_dtype, bit for bit as torch casts."""
    v = torch.cat([torch.randn(4000) * s for s in (1e-7, 6e-5, 1.0, 6e4, 7e4)]).cuda()
    ones = torch.ones(v.numel(), 1, dtype=torch.int8, device="cuda")
    out = T.int8_linear(ones, v, ones[:1], torch.ones(1, device="cuda"), None, out_dtype)[:, 0]
    assert torch.equal(out.view(torch.int16), v.to(out_dtype).view(torch.int16))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", [None, torch.float16, torch.bfloat16], ids=["default", "f16", "bf16"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
def test_int8_linear_out_dtype_and_bias(device, out_dtype, with_bias):
    q, q_scale = T.quantize_rows(rand(2, 5, 40, device=device))
    wq, w_scale = int8(18, 40, device=device), scales(18, device=device)
    bias = rand(18, dtype=torch.float16, device=device) if with_bias else None
    out = T.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    assert out.dtype == (out_dtype or torch.float32) and out.shape == (2, 5, 18)
    ref = reference.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    assert_close_rel(out, ref, TOL[out.dtype] if out_dtype else 1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_int8_weight_linear_non_contiguous_weight(device):
    x = strided(rand(17, 33, device=device), "slice")
    wq = strided(int8(20, 33, device=device), "t")
    w_scale = scales(20, device=device)
    out = T.int8_weight_linear(x, wq, w_scale)
    assert_close_rel(out, f64(x) @ (wq.double() * w_scale.double()[:, None]).t(), TOL[torch.float32])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dw_act", reference.ACTIVATIONS)
@pytest.mark.parametrize("pw_act", reference.ACTIVATIONS)
def test_dwsep_conv2d_every_activation(device, dw_act, pw_act):
    x = rand(1, 5, 6, 5, device=device, scale=4.0).contiguous(memory_format=torch.channels_last)
    args = (x, rand(5, 1, 3, 3, device=device), rand(5, device=device), rand(4, 5, 1, 1, device=device),
            rand(4, device=device), [1, 1], [1, 1], [1, 1], dw_act, pw_act)
    out = T.dwsep_conv2d(*args)
    assert_close_rel(out, reference.dwsep_conv2d(*(f64(a) for a in args)), TOL[torch.float32])
    if pw_act == "relu6":
        assert 0 <= out.min() and out.max() <= 6 and (out == 6).any()


@pytest.mark.parametrize("device", DEVICES)
def test_dwsep_conv2d_matches_torch_modules(device):
    """5x5, stride 2, padding 2, dilation 2 against nn.Conv2d depthwise + pointwise."""
    C, Cout = 6, 20
    dw = torch.nn.Conv2d(C, C, 5, stride=2, padding=2, dilation=2, groups=C).to(device).double()
    pw = torch.nn.Conv2d(C, Cout, 1).to(device).double()
    x = rand(2, C, 11, 9, dtype=torch.float64, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = torch.relu(pw(torch.nn.functional.relu6(dw(x))))
        out = T.dwsep_conv2d(x, dw.weight, dw.bias, pw.weight, pw.bias, [2, 2], [2, 2], [2, 2], "relu6", "relu")
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- bfloat16 dots (GPU only)


@pytest.mark.cuda
def test_bf16_dots_on_gpu():
    x = rand(37, 96, dtype=torch.bfloat16, device="cuda")
    w = nm_weight(70, 96, 2, 4, torch.bfloat16, "cuda")
    values, meta = T.nm_compress(w, 2, 4)
    assert_close_rel(T.nm_linear(x, values, meta, 2, 4), f64(x) @ f64(w).t(), TOL[torch.bfloat16])
    wq, w_scale = int8(70, 96, device="cuda"), scales(70, device="cuda")
    ref = f64(x) @ (wq.double() * w_scale.double()[:, None]).t()
    assert_close_rel(T.int8_weight_linear(x, wq, w_scale), ref, TOL[torch.bfloat16])


# ---------------------------------------------------------------- bad input


def _on(device: str, args: tuple) -> tuple:
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


# the interpreter's numpy sees the NaN/Inf rows of the quantize_rows cases
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("device", DEVICES)
def test_every_bad_input_raises_the_native_error(device):
    """Every case of test_errors.py, through the Triton kernels: the same message.
    (One test: each case is cheap, and most fail before a launch.)"""
    failures = []
    for case in CASES:
        if case.op not in TRITON_OPS:
            continue
        args = _on(device, case.args())
        try:
            getattr(T, case.op)(*args)
        except RuntimeError as exc:
            if not re.search(case.match, str(exc)):
                failures.append(f"{case.id}: {exc}")
        else:
            failures.append(f"{case.id}: accepted")
    assert not failures, failures


@pytest.mark.skipif(not T.INTERPRETED, reason="compiled kernels accept CPU tensors only in the interpreter")
def test_cpu_tensor_needs_the_interpreter(monkeypatch):
    monkeypatch.setattr(T._runtime, "INTERPRETED", False)
    with pytest.raises(RuntimeError, match=r"quantize_rows: the Triton kernels run on CUDA tensors .* got a tensor on cpu"):
        T.quantize_rows(torch.randn(2, 3))


@interpreter
def test_meta_is_validated_in_every_n_m_kernel():
    values, meta = nm_pack(nm_weight(4, 24, 2, 4), 2, 4)
    meta[3, 2] = (meta[3, 2] & 0x0F) | 0b01110000  # row 3, group 5 (columns 20..23) keeps 3
    with pytest.raises(RuntimeError, match=r"nm_decompress: meta row 3 is not a valid 2:4 mask"):
        T.nm_decompress(values, meta, 2, 4)
    with pytest.raises(RuntimeError, match=r"nm_linear: meta is not a valid 2:4 mask"):
        T.nm_linear(rand(5, 24), values, meta, 2, 4)
    q = int8(5, 24)
    with pytest.raises(RuntimeError, match=r"nm_int8_linear: meta is not a valid 2:4 mask"):
        T.nm_int8_linear(q, torch.ones(5), values.round().clamp(-127, 127).to(torch.int8), meta, 2, 4, torch.ones(4))
