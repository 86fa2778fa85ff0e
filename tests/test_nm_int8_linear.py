"""``nm_int8_linear``: the N:M-sparse W8A8 linear against its reference and its dense twin.

Exactness is checked where the contract promises it: with unit scales and no
bias the output is the int32 product itself (bit-exact while it is below 2^24,
where fp32 holds every integer), on both kernel paths (gather for M <= 4, packed
strips above), across the 1024-product chunks of the packed path, and at the
int32 bound. The fused epilogue is the one of ``int8_linear``: the same inputs
through ``int8_linear`` on the decompressed weight give the same bits with unit
scales and a bias, and agree to 1e-6 with real scales (the compiler may fuse a
multiply-add in one kernel and not the other). Input errors are in
``test_errors.py``; opcheck in ``test_opcheck.py``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from samples import DTYPES, int8, nm_int8_pack, nm_int8_weight, rand, sample_inputs, scales

import effdl
from effdl import backends, reference

E = torch.ops.effdl
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}
GATHER_MAX_ROWS = 4  # core::kNmInt8GatherMaxRows: M above it takes the packed path


def _cases():
    for dtype in DTYPES["nm_int8_linear"]:
        count = sum(1 for _ in sample_inputs("nm_int8_linear", "cpu", dtype))
        for i in range(count):
            yield pytest.param(dtype, i, id=f"{str(dtype)[6:]}-{i}")


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    denom = ref.double().norm().item()
    return (out.double() - ref.double()).norm().item() / (denom if denom > 0 else 1.0)


@pytest.mark.parametrize(("dtype", "index"), list(_cases()))
def test_against_reference(dtype, index):
    args = next(itertools.islice(sample_inputs("nm_int8_linear", "cpu", dtype), index, None))
    q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype = args
    out = E.nm_int8_linear(*args)
    N = values_q.shape[0]
    assert out.shape == (*q.shape[:-1], N) and out.dtype == (out_dtype or torch.float32) and out.is_contiguous()
    ref = reference.nm_int8_linear(q, q_scale, values_q, meta.contiguous(), n, m, w_scale, bias, out_dtype)
    assert not out.isnan().any()
    if out.dtype == torch.float32:
        # the reference's fp32 epilogue, up to FMA contraction: within 1e-6 element by element
        atol = 1e-6 * (float(ref.abs().max()) if ref.numel() else 0.0)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=atol)
    else:
        assert _rel_err(out, ref) <= TOL[dtype]


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (3, 7), (1, 2), (5, 16)])
@pytest.mark.parametrize("M", [1, GATHER_MAX_ROWS, GATHER_MAX_ROWS + 1, 17, 40])
def test_exact_with_unit_scales(n, m, M):
    """Unit scales, no bias: the output is the exact integer product of q and the sparse weight."""
    K, N = 6 * m, 11
    wq = nm_int8_weight(N, K, n, m)
    values_q, meta = nm_int8_pack(wq, n, m)
    q = int8(M, K)
    out = E.nm_int8_linear(q, torch.ones(M), values_q, meta, n, m, torch.ones(N))
    exact = reference.int8_matmul_exact(q, wq)  # the dense int8 weight, zeros included
    assert int(exact.abs().max()) < 2**24
    assert torch.equal(out, exact.float())


@pytest.mark.parametrize("M", [1, 9])
def test_exact_across_chunks(M):
    """Partial sums that leave fp32's exact-integer range (2^24) and come back: the packed
    path sums 1024 products at a time so that nothing rounds; the gather path sums int32."""
    n, m, K = 2, 4, 4400  # 2200 kept products per row
    kept = K // m * n
    values_q = torch.full((3, kept), 127, dtype=torch.int8)
    values_q[0, kept // 2:] = -127  # row 0: +1100 * 16129 then -1100 * 16129 -> 0
    values_q[1, ::2] = -127  # row 1: alternating signs -> 0
    values_q[2, -1] = -128  # row 2: 2199 * 16129 - 127 * 128, beyond 2^24
    meta = torch.full((3, K // 8), 0b00110011, dtype=torch.uint8)  # keep columns 0, 1 of each group
    q = torch.full((M, K), 127, dtype=torch.int8)
    out = E.nm_int8_linear(q, torch.ones(M), values_q, meta, n, m, torch.ones(3))
    big = 2199 * 127 * 127 - 127 * 128
    assert big > 2**24
    expected = torch.tensor([0.0, 0.0, float(big)]).expand(M, 3)  # float(big): the fp32 output rounding
    assert torch.equal(out, expected)
    assert torch.equal(out, reference.nm_int8_linear(q, torch.ones(M), values_q, meta, n, m, torch.ones(3)))


@pytest.mark.parametrize("M", [1, GATHER_MAX_ROWS + 1])
def test_largest_k_does_not_overflow(M):
    """K*n/m = 131071 kept products of -128 * -128 sum to 2^31 - 2^14: int32 holds it exactly."""
    n, m = 1, 2
    kept = reference.INT8_MAX_K
    K = kept * m // n
    values_q = torch.full((2, kept), -128, dtype=torch.int8)
    values_q[1] = 127  # the most negative sum
    meta = torch.full((2, (K + 7) // 8), 0b01010101, dtype=torch.uint8)
    meta[:, -1] = 0b00010101  # K = 262142: the last byte holds 6 columns, 3 kept
    q = torch.full((M, K), -128, dtype=torch.int8)
    out = E.nm_int8_linear(q, torch.ones(M), values_q, meta, n, m, torch.ones(2))
    assert out[0, 0].item() == float(kept * 128 * 128) > 2**31 - 2**16
    assert out[0, 1].item() == float(-kept * 128 * 127)
    assert torch.equal(out[0], out[-1])


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32)


def test_matches_dense_int8_linear():
    """The same fused epilogue as int8_linear on the decompressed weight, on both paths:
    bit for bit with unit scales and a bias (acc + bias rounds once, FMA or not) for every
    output dtype; within 1e-6 with real scales (a compiler may fuse the scale multiply
    with the bias add in one kernel and not the other)."""
    n, m, K, N = 2, 4, 96, 13
    wq = nm_int8_weight(N, K, n, m)
    values_q, meta = nm_int8_pack(wq, n, m)
    w_scale, bias = scales(N), rand(N)
    for M in (1, 3, 21):
        q, q_scale = E.quantize_rows(rand(M, K, scale=2.0))
        ones_q, ones_w = torch.ones(M), torch.ones(N)
        for out_dtype in (None, torch.bfloat16, torch.float16):
            got = E.nm_int8_linear(q, ones_q, values_q, meta, n, m, ones_w, bias, out_dtype)
            assert torch.equal(_bits(got), _bits(E.int8_linear(q, ones_q, wq, ones_w, bias, out_dtype)))
        got = E.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias)
        torch.testing.assert_close(got, E.int8_linear(q, q_scale, wq, w_scale, bias), rtol=1e-6, atol=1e-6)


def test_k0():
    """No columns: the output is the bias (or zeros)."""
    q = torch.empty(3, 0, dtype=torch.int8)
    values_q, meta = torch.empty(2, 0, dtype=torch.int8), torch.empty(2, 0, dtype=torch.uint8)
    bias = torch.randn(2)
    out = E.nm_int8_linear(q, torch.ones(3), values_q, meta, 2, 4, torch.ones(2), bias)
    assert torch.equal(out, bias.expand(3, 2))
    assert torch.equal(reference.nm_int8_linear(q, torch.ones(3), values_q, meta, 2, 4, torch.ones(2), bias), out)


def test_wrapper_routes_and_matches_native():
    q, q_scale, values_q, meta, n, m, w_scale, bias, _ = next(sample_inputs("nm_int8_linear"))
    got = effdl.ops.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias=bias)
    assert torch.equal(got, E.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, None))


def test_native_kernels_cover_cpu_and_cuda():
    row = effdl.info()["ops"]["nm_int8_linear"]
    assert row["cpu"] == "yes" and row["reference"] == "yes"
    assert row["cuda"] != "no kernel (CPU only)"
    assert "nm_int8_linear" not in backends.CPU_ONLY_OPS and "nm_int8_linear" in backends.TRITON_OPS


@pytest.mark.cuda
@pytest.mark.parametrize("n_m", [(2, 4), (1, 4), (2, 8)], ids=["2:4", "1:4", "2:8"])
def test_cuda_kernel_matches_cpu_bit_for_bit(n_m):
    """The native CUDA op (tensor cores for 2:4, the simple kernel otherwise) gives the CPU's bits."""
    n, m = n_m
    for M, N, K in [(3, 40, 128), (70, 72, 256), (1, 16, 64)]:
        wq = nm_int8_weight(N, K, n, m)
        values_q, meta = nm_int8_pack(wq, n, m)
        q = int8(M, K)
        qs, ws = scales(M), scales(N)
        bias = rand(N)
        want = E.nm_int8_linear(q, qs, values_q, meta, n, m, ws, bias, torch.bfloat16)
        got = E.nm_int8_linear(q.cuda(), qs.cuda(), values_q.cuda(), meta.cuda(), n, m, ws.cuda(), bias.cuda(),
                               torch.bfloat16)
        assert torch.equal(got.cpu(), want), (M, N, K)
