"""Every effdl operator against its pure-PyTorch reference (:mod:`effdl.reference`).

Float ops: the reference runs on float64 copies and the error is
``‖out − ref‖ / ‖ref‖``, at most 1e-5 for float32/float64 and 1e-2 for
bfloat16/float16. Exact equality where the contract promises it: the N:M format
round trip, ``quantize_rows`` (bit-identical ``q`` and ``scale``) and the int8
products. The native ops allocate their own outputs, so instead of poisoning
outputs the tests check that no NaN appears and every value matches.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from samples import DTYPES, int8, nm_pack, nm_weight, rand, sample_inputs, scales

from effdl import formats, reference

E = torch.ops.effdl
TOL = {torch.float32: 1e-5, torch.float64: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}
DTYPE_IDS = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16", torch.float16: "f16"}


def _count(op: str, dtype=torch.float32) -> int:
    return sum(1 for _ in sample_inputs(op, "cpu", dtype))


def _params(op: str):
    """(device, dtype, sample index) for every sample of ``op``; cuda ones carry the cuda marker."""
    for dtype in DTYPES[op]:
        for i in range(_count(op, dtype)):
            yield pytest.param("cpu", dtype, i, id=f"cpu-{DTYPE_IDS[dtype]}-{i}")
            yield pytest.param("cuda", dtype, i, id=f"cuda-{DTYPE_IDS[dtype]}-{i}", marks=pytest.mark.cuda)


def _sample(op: str, device: str, dtype: torch.dtype, index: int) -> tuple:
    return next(itertools.islice(sample_inputs(op, device, dtype), index, None))


def f64(t):
    return t.detach().double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    denom = ref.norm().item()
    return (out - ref).norm().item() / (denom if denom > 0 else 1.0)


def assert_close_rel(out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert not out.isnan().any(), "NaN in the output"
    err = rel_err(out, ref)
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


def assert_bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    if a.is_floating_point():
        # NaN == NaN and -0.0 != 0.0: compare the bits
        int_t = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        a, b = a.contiguous().view(int_t), b.contiguous().view(int_t)
    assert torch.equal(a.cpu(), b.cpu())


def check_linear_output(out: torch.Tensor, x: torch.Tensor, N: int, dtype: torch.dtype) -> None:
    assert out.shape == (*x.shape[:-1], N)
    assert out.dtype == dtype
    assert out.device == x.device
    assert out.is_contiguous()


# ---------------------------------------------------------------- N:M format


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("nm_compress")))
def test_nm_compress(device, dtype, index):
    w, n, m = _sample("nm_compress", device, dtype, index)
    values, meta = E.nm_compress(w, n, m)
    rows, K = w.shape
    assert values.shape == (rows, K // m * n) and values.dtype == dtype and values.device == w.device
    assert meta.shape == (rows, formats.meta_bytes(K)) and meta.dtype == torch.uint8
    # the canonical format, bit for bit (nm_pack: the reference, which cannot pack 0 rows;
    # test_reference_zero_rows covers that)
    ref_values, ref_meta = nm_pack(w, n, m)
    assert_bitwise_equal(values, ref_values)
    assert_bitwise_equal(meta, ref_meta)
    # exactly n bits per group, none past K
    if rows:
        formats.validate(values.cpu(), meta.cpu(), n, m)
    # round trip: the identity
    assert_bitwise_equal(E.nm_decompress(values, meta, n, m), w.contiguous())


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("nm_decompress")))
def test_nm_decompress(device, dtype, index):
    values, meta, n, m = _sample("nm_decompress", device, dtype, index)
    w = E.nm_decompress(values, meta, n, m)
    K = values.shape[1] // n * m
    assert w.shape == (values.shape[0], K) and w.dtype == dtype and w.device == values.device
    assert w.is_contiguous()
    if values.shape[0]:  # the reference cannot unpack 0 rows: test_reference_zero_rows
        # contiguous meta: the reference cannot unpack a strided one (test_reference_strided_meta)
        assert_bitwise_equal(w, reference.nm_decompress(values, meta.contiguous(), n, m))
    # and back: the same values and meta
    values2, meta2 = E.nm_compress(w, n, m)
    assert_bitwise_equal(values2, values.contiguous())
    assert_bitwise_equal(meta2, meta.contiguous())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nm_compress_keeps_nan(device, dtype):
    """NaN counts as nonzero: it is kept, never dropped or replaced."""
    nan = float("nan")
    w = torch.tensor([[nan, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 2.0, 0.0, 0.0, 0.0, nan, 0.0]], dtype=dtype, device=device)
    values, meta = E.nm_compress(w, 2, 4)
    assert values[0, 0].isnan() and values[0, 1] == 1.0
    assert values[1, 3].isnan()
    # one meta byte per row (K = 8); all-zero or short groups keep their lowest-index zeros
    assert meta.cpu().tolist() == [[0b00111001], [0b01010101]]
    back = E.nm_decompress(values, meta, 2, 4)
    assert torch.equal(back.isnan(), w.isnan())
    assert torch.equal(back.nan_to_num(), w.nan_to_num())
    # a group with a NaN and n other nonzeros breaks the pattern
    bad = w.clone()
    bad[1, 4] = 3.0
    bad[1, 5] = 4.0
    with pytest.raises(RuntimeError, match="row 1, group 1"):
        E.nm_compress(bad, 2, 4)


def test_nm_compress_padding_zeros_are_lowest_index():
    """A group with fewer than n nonzeros keeps explicit zeros at its lowest-index zero positions."""
    w = torch.tensor([[0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0]])
    values, meta = E.nm_compress(w, 2, 4)
    assert values.tolist() == [[0.0, 5.0, 0.0, 0.0]]
    assert meta.tolist() == [[0b00111001]]


@pytest.mark.parametrize(("n", "m"), [(1, 2), (2, 4), (3, 5), (7, 8), (15, 16), (1, 16)])
def test_nm_round_trip_every_m(n, m):
    w = nm_weight(6, 3 * m, n, m)
    values, meta = E.nm_compress(w, n, m)
    assert_bitwise_equal(E.nm_decompress(values, meta, n, m), w)
    ref_values, ref_meta = reference.nm_compress(w, n, m)
    assert_bitwise_equal(values, ref_values)
    assert_bitwise_equal(meta, ref_meta)


def test_reference_zero_rows():
    """A weight with no rows: the native ops handle it, and so must the reference backend."""
    w = torch.empty(0, 8)
    values, meta = E.nm_compress(w, 2, 4)
    assert values.shape == (0, 4) and meta.shape == (0, 1)
    assert E.nm_decompress(values, meta, 2, 4).shape == (0, 8)
    ref_values, ref_meta = reference.nm_compress(w, 2, 4)
    assert ref_values.shape == (0, 4) and ref_meta.shape == (0, 1)
    assert reference.nm_decompress(values, meta, 2, 4).shape == (0, 8)


def test_reference_strided_meta():
    """The reference backend accepts the non-contiguous meta the native ops accept."""
    values, meta = nm_pack(nm_weight(5, 16, 2, 4), 2, 4)
    strided_meta = meta.t().contiguous().t()
    expected = E.nm_decompress(values, meta, 2, 4)
    assert torch.equal(E.nm_decompress(values, strided_meta, 2, 4), expected)
    assert torch.equal(reference.nm_decompress(values, strided_meta, 2, 4), expected)


# ---------------------------------------------------------------- nm_linear


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("nm_linear")))
def test_nm_linear(device, dtype, index):
    x, values, meta, n, m, bias = _sample("nm_linear", device, dtype, index)
    out = E.nm_linear(x, values, meta, n, m, bias)
    check_linear_output(out, x, values.shape[0], dtype)
    # contiguous meta: the reference cannot unpack a strided one (test_reference_strided_meta)
    ref = reference.nm_linear(f64(x), f64(values), meta.contiguous(), n, m, f64(bias))
    assert_close_rel(out, ref, TOL[dtype])


def test_nm_linear_equals_dense_linear():
    """Against plain F.linear on the decompressed weight, through the packed path (M > 4)."""
    w = nm_weight(16, 64, 2, 4, torch.float64)
    values, meta = nm_pack(w, 2, 4)
    x = rand(33, 64, dtype=torch.float64)
    b = rand(16, dtype=torch.float64)
    out = E.nm_linear(x, values, meta, 2, 4, b)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, w, b), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- quantize_rows


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("quantize_rows")))
def test_quantize_rows(device, dtype, index):
    (x,) = _sample("quantize_rows", device, dtype, index)
    q, scale = E.quantize_rows(x)
    assert q.shape == x.shape and q.dtype == torch.int8 and q.device == x.device
    assert scale.shape == x.shape[:-1] and scale.dtype == torch.float32 and scale.device == x.device
    ref_q, ref_scale = reference.quantize_rows(x)
    assert_bitwise_equal(q, ref_q)
    assert_bitwise_equal(scale, ref_scale)
    assert q.numel() == 0 or int(q.abs().max()) <= 127
    assert bool((scale > 0).all())


@pytest.mark.parametrize("dtype", DTYPES["quantize_rows"], ids=lambda d: DTYPE_IDS[d])
def test_quantize_rows_zero_row(device, dtype):
    x = rand(3, 10, dtype=dtype, device=device)
    x[1] = 0
    q, scale = E.quantize_rows(x)
    assert scale[1].item() == torch.finfo(torch.float32).tiny
    assert not scale.isnan().any()
    assert torch.equal(q[1], torch.zeros(10, dtype=torch.int8, device=device))
    assert q[0].abs().max() == 127 and q[2].abs().max() == 127


@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [(torch.float16, 1e-6), (torch.float16, 1e4), (torch.bfloat16, 1e-38), (torch.bfloat16, 1e37),
     (torch.float32, 1e-40), (torch.float32, 1e37)],
    ids=["f16-subnormal", "f16-large", "bf16-tiny", "bf16-huge", "f32-subnormal", "f32-huge"],
)
def test_quantize_rows_extreme_magnitudes(dtype, magnitude):
    x = rand(64, 33, dtype=torch.float64, scale=magnitude).to(dtype)
    assert torch.isfinite(x).all()
    q, scale = E.quantize_rows(x)
    ref_q, ref_scale = reference.quantize_rows(x)
    assert_bitwise_equal(q, ref_q)
    assert_bitwise_equal(scale, ref_scale)


def test_quantize_rows_rounds_half_to_even():
    # absmax 127 makes the scale exactly 1, so x / scale is x
    x = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -127.0]])
    q, scale = E.quantize_rows(x)
    assert scale.tolist() == [1.0]
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, -2, 3, -127]]


# ---------------------------------------------------------------- int8_linear


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("int8_linear")))
def test_int8_linear(device, dtype, index):
    q, q_scale, wq, w_scale, bias, out_dtype = _sample("int8_linear", device, dtype, index)
    out = E.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    check_linear_output(out, q, wq.shape[0], out_dtype or torch.float32)
    ref = reference.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    assert ref.dtype == out.dtype
    if out.dtype == torch.float32:
        # the same fp32 epilogue as the reference: within 1e-6 of it, element by element
        assert not out.isnan().any()
        atol = 1e-6 * (float(ref.abs().max()) if ref.numel() else 0.0)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=atol)
    else:
        assert_close_rel(out, ref, TOL[dtype])


@pytest.mark.parametrize(("M", "K", "N"), [(1, 24, 5), (0, 16, 4), (7, 19, 3), (20, 64, 17), (3, 1023, 9)])
def test_int8_linear_exact_with_unit_scales(device, M, K, N):
    """Unit scales, no bias: the output is the exact integer product (|acc| < 2^24 is exact in fp32)."""
    q = int8(M, K, device=device)
    wq = int8(N, K, device=device)
    out = E.int8_linear(q, torch.ones(M, device=device), wq, torch.ones(N, device=device))
    exact = reference.int8_matmul_exact(q, wq)
    assert exact.numel() == 0 or int(exact.abs().max()) < 2**24
    assert torch.equal(out, exact.float())


def test_int8_linear_max_k_does_not_overflow(device):
    K = reference.INT8_MAX_K
    q = torch.full((1, K), -128, dtype=torch.int8, device=device)
    wq = torch.stack([
        torch.full((K,), -128, dtype=torch.int8),  # +K * 2^14, the largest sum
        torch.full((K,), 127, dtype=torch.int8),  # the most negative sum
        torch.randint(-128, 128, (K,), dtype=torch.int8),
    ]).to(device)
    ones = torch.ones(1, device=device), torch.ones(3, device=device)
    out = E.int8_linear(q, ones[0], wq, ones[1])
    ref = reference.int8_linear(q, ones[0], wq, ones[1])
    assert out[0, 0].item() == float(K * 128 * 128) > 2**31 - 2**16
    assert out[0, 1].item() == float(-K * 128 * 127)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_int8_linear_output_cast_rounds_like_torch(out_dtype):
    """With q = wq = 1 and w_scale = 1 the output is q_scale itself cast to out_dtype: the
    kernel's fp32 -> 16-bit conversion must match torch's bit for bit (ties to even,
    subnormals, overflow to inf)."""
    g = torch.Generator().manual_seed(1)
    bits = (torch.randint(0, 2**32, (20000,), generator=g, dtype=torch.int64) - 2**31).to(torch.int32)
    random_floats = bits.view(torch.float32)
    near_range = torch.cat([torch.randn(2000, generator=g) * s for s in (1e-7, 1e-5, 6e-5, 1.0, 6e4, 7e4)])
    edges = torch.tensor([65504.0, 65519.99, 65520.0, 65536.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14,
                          1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8, float("inf"), -float("inf"),
                          0.0, -0.0, 3.4028235e38, -1e-45])
    v = torch.cat([random_floats[torch.isfinite(random_floats)], near_range, edges])
    M = v.numel()
    out = E.int8_linear(torch.ones(M, 1, dtype=torch.int8), v, torch.ones(1, 1, dtype=torch.int8), torch.ones(1),
                        None, out_dtype)[:, 0]
    expected = v.to(out_dtype)
    bad = out.view(torch.int16) != expected.view(torch.int16)
    assert not bad.any(), f"{int(bad.sum())} values: {v[bad][:5].tolist()} -> {out[bad][:5].tolist()}"


def test_int8_linear_real_scales_relative():
    q, q_scale = E.quantize_rows(rand(6, 96, scale=3.0))
    wq, w_scale = int8(10, 96), scales(10)
    bias = rand(10)
    out = E.int8_linear(q, q_scale, wq, w_scale, bias)
    ref = reference.int8_linear(q, q_scale, wq, w_scale, bias)
    assert rel_err(out, ref) <= 1e-6


# ---------------------------------------------------------------- int8_weight_linear


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("int8_weight_linear")))
def test_int8_weight_linear(device, dtype, index):
    x, wq, w_scale, bias = _sample("int8_weight_linear", device, dtype, index)
    out = E.int8_weight_linear(x, wq, w_scale, bias)
    check_linear_output(out, x, wq.shape[0], dtype)
    # fp64 oracle: the op itself takes only fp32/bf16/fp16 activations
    ref = f64(x) @ (wq.double() * w_scale.double()[:, None]).t()
    if bias is not None:
        ref = ref + f64(bias)
    assert_close_rel(out, ref, TOL[dtype])


@pytest.mark.parametrize(("lead", "K", "N"), [((16,), 4103, 35), ((3, 3), 33, 4), ((1,), 100, 7), ((70,), 1000, 5)])
def test_int8_weight_linear_bf16_x_matches_fp32_x(lead, K, N):
    """bf16 x read as bf16 (vdpbf16ps on avx512_bf16) agrees with the same x widened to fp32,
    to the output's rounding: every product is exact in both and both sum in fp32."""
    g = torch.Generator().manual_seed(K * N)
    x = torch.randn(*lead, K, generator=g).bfloat16()
    wq = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    w_scale = torch.rand(N, generator=g) * 0.05 + 1e-3
    bias = torch.randn(N, generator=g).bfloat16()
    out = E.int8_weight_linear(x, wq, w_scale, bias)
    assert out.dtype == torch.bfloat16 and out.shape == (*lead, N)
    want = E.int8_weight_linear(x.float(), wq, w_scale, bias.float())
    terms = x.float().abs() @ wq.float().abs().t() * w_scale + bias.float().abs()
    tol = 2.0**-8 * want.abs() + K * 2.0**-23 * terms
    assert ((out.float() - want).abs() <= tol).all()
    # a strided x (every other column of a wider tensor) reads the same values
    wide = torch.zeros(*lead, 2 * K, dtype=torch.bfloat16)
    wide[..., ::2] = x
    assert torch.equal(E.int8_weight_linear(wide[..., ::2], wq, w_scale, bias), out)


# ---------------------------------------------------------------- K = 0 (empty reduction)


def test_quantize_rows_k0():
    x = torch.empty(3, 0)
    q, scale = E.quantize_rows(x)
    ref_q, ref_scale = reference.quantize_rows(x)
    assert_bitwise_equal(q, ref_q)
    assert_bitwise_equal(scale, ref_scale)


def test_nm_linear_k0():
    x, values, meta = torch.randn(2, 0), torch.randn(3, 0), torch.zeros(3, 0, dtype=torch.uint8)
    bias = torch.randn(3)
    torch.testing.assert_close(E.nm_linear(x, values, meta, 2, 4, bias), bias.expand(2, 3))


def test_int8_linear_k0():
    q, wq = torch.empty(2, 0, dtype=torch.int8), torch.empty(3, 0, dtype=torch.int8)
    out = E.int8_linear(q, torch.ones(2), wq, torch.ones(3))
    assert torch.equal(out, torch.zeros(2, 3))


def test_int8_weight_linear_k0():
    out = E.int8_weight_linear(torch.empty(2, 0), torch.empty(3, 0, dtype=torch.int8), torch.ones(3))
    assert torch.equal(out, torch.zeros(2, 3))


# ---------------------------------------------------------------- dwsep_conv2d


@pytest.mark.parametrize(("device", "dtype", "index"), list(_params("dwsep_conv2d")))
def test_dwsep_conv2d(device, dtype, index):
    args = _sample("dwsep_conv2d", device, dtype, index)
    x = args[0]
    out = E.dwsep_conv2d(*args)
    ref = reference.dwsep_conv2d(*(f64(a) for a in args))
    assert out.dtype == dtype and out.device == x.device
    channels_last_in = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    if channels_last_in:
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()
    assert_close_rel(out, ref, TOL[dtype])


@pytest.mark.parametrize("dw_act", reference.ACTIVATIONS)
@pytest.mark.parametrize("pw_act", reference.ACTIVATIONS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_dwsep_conv2d_every_activation(device, dw_act, pw_act, channels_last):
    x = rand(2, 5, 7, 6, device=device, scale=4.0)  # large enough to cross 0 and 6
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    args = (x, rand(5, 1, 3, 3, device=device), rand(5, device=device), rand(4, 5, 1, 1, device=device),
            rand(4, device=device), [1, 1], [1, 1], [1, 1], dw_act, pw_act)
    out = E.dwsep_conv2d(*args)
    ref = reference.dwsep_conv2d(*(f64(a) for a in args))
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert_close_rel(out, ref, TOL[torch.float32])
    if pw_act == "relu6":
        assert 0 <= out.min() and out.max() <= 6 and (out == 6).any()


def test_dwsep_conv2d_same_result_for_any_thread_count():
    """The CPU kernel splits output pixels among threads; a pixel's result must
    not depend on how (no reduction crosses the split), so the outputs are equal."""
    x = rand(3, 37, 15, 13).contiguous(memory_format=torch.channels_last)
    weights = (rand(37, 1, 3, 3), rand(37), rand(45, 37, 1, 1), rand(45))
    args = (x, *weights, [1, 1], [1, 1], [1, 1], "relu6", "none")
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append(E.dwsep_conv2d(*args))
    finally:
        torch.set_num_threads(before)
    assert_close_rel(outs[0], reference.dwsep_conv2d(*(f64(a) for a in args)), TOL[torch.float32])
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_dwsep_conv2d_matches_torch_modules(device):
    """Against nn.Conv2d depthwise + pointwise, the layers the fused op replaces."""
    C, Cout = 8, 16
    dw = torch.nn.Conv2d(C, C, 3, stride=2, padding=1, groups=C).to(device).double()
    pw = torch.nn.Conv2d(C, Cout, 1).to(device).double()
    x = rand(2, C, 11, 9, dtype=torch.float64, device=device)
    with torch.no_grad():
        expected = torch.relu(pw(torch.nn.functional.relu6(dw(x))))
        out = E.dwsep_conv2d(x, dw.weight, dw.bias, pw.weight, pw.bias, [2, 2], [1, 1], [1, 1], "relu6", "relu")
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
