"""Property tests (hypothesis) over N:M patterns, shapes, dtypes and strides.

hypothesis draws the structure (pattern, sizes, dtype, layout) and a seed; the
tensors come from a torch.Generator seeded with it, so every failure replays.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from effdl import formats, reference

E = torch.ops.effdl

SETTINGS = settings(deadline=None, max_examples=50, derandomize=True)


@st.composite
def nm_patterns(draw):
    m = draw(st.integers(2, 16))
    n = draw(st.integers(1, m - 1))
    return n, m


def _randn(gen: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    t = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return torch.where(t == 0, torch.ones_like(t), t).to(dtype)


def _nm_weight(gen: torch.Generator, rows: int, K: int, n: int, m: int, dtype, drop: float) -> torch.Tensor:
    """An n:m sparse weight; a fraction ``drop`` of the kept entries zeroed (short groups)."""
    w = _randn(gen, rows, K, dtype=dtype)
    if rows == 0 or K == 0:
        return w
    keep = formats.nm_mask(w, n, m)
    keep &= torch.rand(rows, K, generator=gen) >= drop
    return torch.where(keep, w, torch.zeros_like(w))


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    denom = ref.double().norm().item()
    return (out.double() - ref.double()).norm().item() / (denom if denom > 0 else 1.0)


@SETTINGS
@given(
    pattern=nm_patterns(),
    rows=st.integers(1, 9),
    groups=st.integers(1, 6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    drop=st.sampled_from([0.0, 0.3, 1.0]),
    transposed=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_nm_compress_decompress_identity(pattern, rows, groups, dtype, drop, transposed, seed):
    n, m = pattern
    K = groups * m
    gen = torch.Generator().manual_seed(seed)
    w = _nm_weight(gen, rows, K, n, m, dtype, drop)
    if transposed:
        w = w.t().contiguous().t()
    values, meta = E.nm_compress(w, n, m)
    assert values.shape == (rows, K // m * n) and meta.shape == (rows, formats.meta_bytes(K))
    ref_values, ref_meta = reference.nm_compress(w, n, m)
    assert torch.equal(values, ref_values)
    assert torch.equal(meta, ref_meta)
    assert formats.validate(values, meta, n, m) == K
    assert torch.equal(E.nm_decompress(values, meta, n, m), w)


@SETTINGS
@given(
    pattern=nm_patterns(),
    N=st.integers(1, 9),
    groups=st.integers(1, 5),
    M=st.integers(0, 21),
    batch=st.sampled_from([(), (2,)]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    x_layout=st.sampled_from(["contiguous", "transposed"]),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_nm_linear_matches_reference(pattern, N, groups, M, batch, dtype, x_layout, with_bias, seed):
    n, m = pattern
    K = groups * m
    gen = torch.Generator().manual_seed(seed)
    values, meta = reference.nm_compress(_nm_weight(gen, N, K, n, m, dtype, 0.2), n, m)
    if x_layout == "transposed":
        x = _randn(gen, *batch, K, M, dtype=dtype).transpose(-1, -2)
    else:
        x = _randn(gen, *batch, M, K, dtype=dtype)
    bias = _randn(gen, N, dtype=dtype) if with_bias else None
    out = E.nm_linear(x, values, meta, n, m, bias)
    assert out.shape == (*batch, M, N) and out.dtype == dtype
    ref = reference.nm_linear(x.double(), values.double(), meta, n, m, None if bias is None else bias.double())
    assert not out.isnan().any()
    assert _rel_err(out, ref) <= 1e-5


@SETTINGS
@given(
    M=st.integers(0, 9),
    K=st.integers(1, 70),
    N=st.integers(1, 12),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    magnitude=st.sampled_from([1e-3, 1.0, 50.0]),
    out_dtype=st.sampled_from([None, torch.bfloat16, torch.float16]),
    with_bias=st.booleans(),
    transposed=st.booleans(),
    zero_row=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_quantize_rows_then_int8_linear(M, K, N, dtype, magnitude, out_dtype, with_bias, transposed, zero_row, seed):
    gen = torch.Generator().manual_seed(seed)
    x = _randn(gen, K, M).t() if transposed else _randn(gen, M, K)
    x = (x * magnitude).to(dtype)
    if zero_row and M:
        x[M // 2] = 0
    q, q_scale = E.quantize_rows(x)
    ref_q, ref_scale = reference.quantize_rows(x)
    assert torch.equal(q, ref_q)
    assert torch.equal(scale_bits(q_scale), scale_bits(ref_scale))
    wq = torch.randint(-128, 128, (N, K), generator=gen, dtype=torch.int8)
    w_scale = torch.rand(N, generator=gen) * 0.01 + 1e-3  # keeps fp16 outputs finite
    bias = _randn(gen, N) if with_bias else None
    out = E.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    ref = reference.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    assert out.dtype == ref.dtype == (out_dtype or torch.float32) and out.shape == (M, N)
    assert not out.isnan().any()
    assert _rel_err(out, ref) <= (1e-6 if out_dtype is None else 1e-2)


def scale_bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)
