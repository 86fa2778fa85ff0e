"""The fast CUDA kernels on a GPU: tensor cores (csrc/cuda/*_tc_kernels.cuh), the int8 GEMV, the one-pass
quantize_rows and the tiled dwsep_conv2d.

Each kernel covers part of its op (the glue keeps the simple kernels for the rest):
- ``nm_linear``: 2:4, fp16/bf16, ``K % 64 == 0``, 16-byte aligned ``x`` and ``values`` (sm_80+);
- ``int8_linear``: ``K % 16 == 0``, 16-byte aligned ``q`` and ``wq`` (sm_80+);
- ``nm_int8_linear``: 2:4, ``K % 64 == 0``, 16-byte aligned ``q`` and ``values`` (sparse int8 tensor cores, sm_80+);
- ``int8_weight_linear``: ``M <= 16``, ``K % 16 == 0``, 16-byte aligned ``x`` and ``wq``;
- ``quantize_rows``: rows of at most 8192 elements (one pass over ``x``);
- ``dwsep_conv2d``: every shape (the tiled kernel).
The two tensor-core matmuls split K over several blocks when the output tiles alone would leave the
GPU idle (decode sizes).
The sizes below hit those paths with ragged ``M``/``N`` (tails of the 64 x 64 blocks and of the
16 x 8 mma tiles), several K blocks, the K bound of int32, and, just outside each condition, the
fallback. Small-integer data make the float products exact, so a misplaced fragment element shows
as an exact mismatch instead of hiding in a tolerance. ``EFFDL_CUDA_SIMPLE_KERNELS=1`` keeps the
simple kernels everywhere, which gives a second opinion on the same GPU.

``int8_linear`` also has a Hopper kernel (wgmma, sm_90a, ``M >= 128``), opt-in through
``EFFDL_CUDA_WGMMA=1`` until it is validated: its tests run only when the whole run has that set
(bench/device_check.sh runs the int8_linear tests a second time so), which also sends the
``M >= 128`` shapes of the other int8_linear tests to it.

The index maps of the tensor-core kernels and the phases of the tiled dwsep kernel are also checked on
the CPU (tests/native/test_mma_layout.cpp, test_wgmma_layout.cpp, test_dwsep_tile.cpp).
"""

from __future__ import annotations

import os

import pytest
import torch
from samples import int8, nm_int8_pack, nm_int8_weight, nm_pack, nm_weight, rand, scales

from effdl import _ext, reference

pytestmark = pytest.mark.cuda

E = torch.ops.effdl
DEV = "cuda"
HALF = [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float16, id="f16")]


def w8_oracle(x, wq, ws, bias=None) -> torch.Tensor:
    """fp64 oracle of int8_weight_linear (the op itself takes no fp64 activations)."""
    ref = x.double() @ (wq.double() * ws.double()[:, None]).t()
    return ref if bias is None else ref + bias.double()


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    denom = ref.norm().item()
    return (out - ref).norm().item() / (denom if denom > 0 else 1.0)


def small_ints(*shape: int, lo: int = -2, hi: int = 2, dtype=torch.float32) -> torch.Tensor:
    return torch.randint(lo, hi + 1, shape, device=DEV).to(dtype)


def misaligned(t: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``t`` whose data pointer is one element past a 16-byte boundary."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    out = flat[1:].view(t.shape)
    out.copy_(t)
    assert out.is_contiguous() and out.data_ptr() % 16 != 0
    return out


# ---------------------------------------------------------------- nm_linear 2:4 (mma.sp)

# the last three split K (few output tiles, many K blocks: mma_layout.h splitk_plan)
NM_TC_SHAPES = [
    (1, 16, 64),
    (8, 64, 64),
    (70, 72, 128),
    (3, 130, 192),
    (129, 65, 64),
    (300, 256, 1024),
    (2, 16, 2048),
    (5, 100, 1536),
]


def sparse24_ints(N: int, K: int, dtype: torch.dtype) -> torch.Tensor:
    """A 2:4 weight of small integers; some groups keep fewer than two nonzeros."""
    w = small_ints(N, K, lo=-2, hi=2)
    w = torch.where(w == 0, torch.ones_like(w), w)
    scores = torch.rand(N, K // 4, 4, device=DEV)
    top = scores.topk(2, dim=-1).indices
    keep = torch.zeros(N, K // 4, 4, dtype=torch.bool, device=DEV).scatter_(-1, top, True).view(N, K)
    drop = torch.rand(N, K, device=DEV) < 0.2
    return torch.where(keep & ~drop, w, torch.zeros_like(w)).to(dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(("M", "N", "K"), NM_TC_SHAPES)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_nm_linear_2_4_exact_on_small_integers(M, N, K, dtype, with_bias):
    """Small integers keep every fp32 partial sum exact, so y is the exact product rounded once
    to the output dtype (equal to it wherever the dtype holds the integer)."""
    w = sparse24_ints(N, K, dtype)
    x = small_ints(M, K, dtype=dtype)
    values, meta = nm_pack(w, 2, 4)
    bias = small_ints(N, dtype=dtype) if with_bias else None
    y = E.nm_linear(x, values, meta, 2, 4, bias)
    exact = x.double() @ w.double().t() + (bias.double() if with_bias else 0.0)
    assert y.shape == (M, N) and y.dtype == dtype
    assert torch.equal(y, exact.to(dtype))  # one rounding of an exact fp32 sum


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(
    ("M", "N", "K"), [(1, 4096, 4096), (16, 1024, 4096), (512, 384, 768), (77, 200, 3072)]
)
def test_nm_linear_2_4_random(M, N, K, dtype):
    w = nm_weight(N, K, 2, 4, dtype=dtype, device=DEV)
    values, meta = nm_pack(w, 2, 4)
    x = rand(M, K, dtype=dtype, device=DEV)
    bias = rand(N, dtype=dtype, device=DEV)
    y = E.nm_linear(x, values, meta, 2, 4, bias)
    ref = reference.nm_linear(x.double(), values.double(), meta, 2, 4, bias.double())
    assert not y.isnan().any()
    assert rel_err(y, ref) <= 1e-2


@pytest.mark.parametrize("dtype", HALF)
def test_nm_linear_2_4_batch_dims_and_strided_x(dtype):
    K, N = 256, 96
    w = nm_weight(N, K, 2, 4, dtype=dtype, device=DEV)
    values, meta = nm_pack(w, 2, 4)
    x = rand(2, 3, 2 * K, dtype=dtype, device=DEV)[..., ::2]  # non-contiguous: the glue copies it
    y = E.nm_linear(x, values, meta, 2, 4)
    ref = reference.nm_linear(x.double(), values.double(), meta, 2, 4)
    assert y.shape == (2, 3, N)
    assert rel_err(y, ref) <= 1e-2


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(
    "case", ["k_not_multiple_of_64", "misaligned_x", "misaligned_values", "pattern_2_8", "pattern_1_4"]
)
def test_nm_linear_fallback_paths(case, dtype):
    """Just outside the tensor-core conditions: the simple kernel answers, equally right."""
    n, m, K, N, M = 2, 4, 128, 40, 9
    if case == "k_not_multiple_of_64":
        K = 96
    elif case == "pattern_2_8":
        n, m = 2, 8
    elif case == "pattern_1_4":
        n, m = 1, 4
    w = sparse24_ints(N, K, dtype) if (n, m) == (2, 4) else nm_weight(N, K, n, m, dtype=dtype, device=DEV)
    values, meta = nm_pack(w, n, m)
    x = small_ints(M, K, dtype=dtype)
    if case == "misaligned_x":
        x = misaligned(x)
    if case == "misaligned_values":
        values = misaligned(values)
    y = E.nm_linear(x, values, meta, n, m)
    ref = reference.nm_linear(x.double(), values.double(), meta, n, m)
    assert rel_err(y, ref) <= 1e-2


@pytest.mark.parametrize("dtype", HALF)
def test_nm_linear_tensor_cores_agree_with_simple_kernel(dtype, monkeypatch):
    K, N, M = 512, 200, 33
    w = nm_weight(N, K, 2, 4, dtype=dtype, device=DEV)
    values, meta = nm_pack(w, 2, 4)
    x = rand(M, K, dtype=dtype, device=DEV)
    fast = E.nm_linear(x, values, meta, 2, 4)
    monkeypatch.setenv("EFFDL_CUDA_SIMPLE_KERNELS", "1")
    simple = E.nm_linear(x, values, meta, 2, 4)
    assert rel_err(fast, simple) <= 4e-3


@pytest.mark.parametrize("dtype", HALF)
def test_nm_linear_2_4_corrupt_meta_raises_on_tensor_core_path(dtype):
    K, N = 128, 16
    w = nm_weight(N, K, 2, 4, dtype=dtype, device=DEV)
    values, meta = nm_pack(w, 2, 4)
    meta = meta.clone()
    meta[3, 5] = 0xFF  # two groups with four bits each
    with pytest.raises(RuntimeError, match="not a valid 2:4 mask"):
        E.nm_linear(rand(4, K, dtype=dtype, device=DEV), values, meta, 2, 4)
    torch.cuda.synchronize()  # the device is still usable


# ---------------------------------------------------------------- nm_int8_linear 2:4 (mma.sp s8)


@pytest.mark.parametrize(("M", "N", "K"), NM_TC_SHAPES)
def test_nm_int8_linear_2_4_tensor_cores_exact(M, N, K):
    """Unit scales, no bias: the output is the exact int32 product of the kept weights (below
    2^24 here, so fp32 holds it), bit for bit, split-K shapes included."""
    wq = nm_int8_weight(N, K, 2, 4, device=DEV)
    values_q, meta = nm_int8_pack(wq, 2, 4)
    q = int8(M, K, device=DEV, low=-127)
    ones_m, ones_n = torch.ones(M, device=DEV), torch.ones(N, device=DEV)
    out = E.nm_int8_linear(q, ones_m, values_q, meta, 2, 4, ones_n, None, None)
    exact = q.double() @ wq.double().t()
    assert exact.abs().max() < 2**24
    assert torch.equal(out.double(), exact)


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize(("M", "N", "K"), [(70, 72, 128), (2, 16, 2048), (300, 256, 1024)])
def test_nm_int8_linear_2_4_tensor_cores_epilogue(M, N, K, out_dtype):
    """Scales, bias and output cast: the same bits as the CPU kernel and the reference."""
    wq = nm_int8_weight(N, K, 2, 4, device=DEV)
    values_q, meta = nm_int8_pack(wq, 2, 4)
    q, qs, ws = int8(M, K, device=DEV), scales(M, device=DEV), scales(N, device=DEV)
    bias = rand(N, device=DEV)
    out = E.nm_int8_linear(q, qs, values_q, meta, 2, 4, ws, bias, out_dtype)
    cpu = [t.cpu() for t in (q, qs, values_q, meta)]
    want = E.nm_int8_linear(*cpu, 2, 4, ws.cpu(), bias.cpu(), out_dtype)
    assert torch.equal(out.cpu(), want)


@pytest.mark.parametrize("case", ["k_not_multiple_of_64", "misaligned_q", "misaligned_values", "pattern_1_4",
                                  "pattern_2_8", "simple_kernels"])
def test_nm_int8_linear_fallback_paths(case, monkeypatch):
    """Just outside the tensor-core conditions the simple kernel answers, with the same bits."""
    n, m, K, N, M = 2, 4, 128, 40, 9
    if case == "k_not_multiple_of_64":
        K = 96
    elif case == "pattern_1_4":
        n, m = 1, 4
    elif case == "pattern_2_8":
        n, m = 2, 8
    elif case == "simple_kernels":
        monkeypatch.setenv("EFFDL_CUDA_SIMPLE_KERNELS", "1")
    wq = nm_int8_weight(N, K, n, m, device=DEV)
    values_q, meta = nm_int8_pack(wq, n, m)
    q, qs, ws = int8(M, K, device=DEV), scales(M, device=DEV), scales(N, device=DEV)
    if case == "misaligned_q":
        q = misaligned(q)
    if case == "misaligned_values":
        values_q = misaligned(values_q)
    out = E.nm_int8_linear(q, qs, values_q, meta, n, m, ws, None, None)
    want = E.nm_int8_linear(q.cpu(), qs.cpu(), values_q.cpu(), meta.cpu(), n, m, ws.cpu(), None, None)
    assert torch.equal(out.cpu(), want)


def test_nm_int8_linear_corrupt_meta_raises_on_tensor_core_path():
    K, N = 128, 16
    values_q, meta = nm_int8_pack(nm_int8_weight(N, K, 2, 4, device=DEV), 2, 4)
    meta = meta.clone()
    meta[3, 5] = 0xFF  # two groups with four bits each
    with pytest.raises(RuntimeError, match="not a valid 2:4 mask"):
        E.nm_int8_linear(int8(4, K, device=DEV), scales(4, device=DEV), values_q, meta, 2, 4,
                         scales(N, device=DEV), None, None)
    torch.cuda.synchronize()  # the device is still usable


# ---------------------------------------------------------------- int8_linear (mma s8)

# the last three split K
I8_TC_SHAPES = [
    (1, 8, 16),
    (16, 64, 64),
    (70, 72, 112),
    (65, 130, 208),
    (3, 5, 32),
    (300, 256, 4096),
    (2, 16, 8192),
    (5, 100, 1536),
]


@pytest.mark.parametrize(("M", "N", "K"), I8_TC_SHAPES)
def test_int8_linear_tensor_cores_exact(M, N, K):
    """Unit scales, no bias: the exact integer product (|acc| < 2^24 is exact in fp32)."""
    q, wq = int8(M, K, device=DEV), int8(N, K, device=DEV)
    out = E.int8_linear(q, torch.ones(M, device=DEV), wq, torch.ones(N, device=DEV))
    exact = reference.int8_matmul_exact(q, wq)
    assert torch.equal(out, exact.float())  # past 2^24 (K = 4096) both round the same int32 once


@pytest.mark.parametrize(("M", "N", "K"), I8_TC_SHAPES)
@pytest.mark.parametrize("out_dtype", [None, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_int8_linear_tensor_cores_epilogue(M, N, K, out_dtype):
    """Scales, bias, output cast: the reference's fp32 epilogue in the same order, bit for bit."""
    q, wq = int8(M, K, device=DEV), int8(N, K, device=DEV)
    qs, ws, bias = scales(M, device=DEV), scales(N, device=DEV), rand(N, device=DEV)
    out = E.int8_linear(q, qs, wq, ws, bias, out_dtype)
    ref = reference.int8_linear(q, qs, wq, ws, bias, out_dtype)
    assert out.dtype == ref.dtype
    assert torch.equal(out, ref)


def test_int8_linear_tensor_cores_at_the_int32_bound():
    K = reference.INT8_MAX_K // 16 * 16  # the largest K the tensor-core path takes
    q = torch.full((2, K), -128, dtype=torch.int8, device=DEV)
    wq = torch.stack([torch.full((K,), -128, dtype=torch.int8), torch.full((K,), 127, dtype=torch.int8)]).to(
        DEV
    )
    ones = torch.ones(2, device=DEV)
    out = E.int8_linear(q, ones, wq, ones)
    assert out[0, 0].item() == float(K * 128 * 128) > 2**31 - 2**19
    assert out[0, 1].item() == float(-K * 128 * 127)
    assert torch.equal(out, reference.int8_linear(q, ones, wq, ones))


def check_int8_linear_fallback(case, M, N, K, odd_K, monkeypatch):
    """int8_linear with one condition of a fast kernel broken (``case``) equals the reference."""
    if case == "k_not_multiple_of_16":
        K = odd_K
    if case == "simple_kernels":
        monkeypatch.setenv("EFFDL_CUDA_SIMPLE_KERNELS", "1")
    q, wq = int8(M, K, device=DEV), int8(N, K, device=DEV)
    if case == "misaligned_q":
        q = misaligned(q)
    if case == "misaligned_wq":
        wq = misaligned(wq)
    qs, ws = scales(M, device=DEV), scales(N, device=DEV)
    assert torch.equal(E.int8_linear(q, qs, wq, ws), reference.int8_linear(q, qs, wq, ws))


@pytest.mark.parametrize("case", ["k_not_multiple_of_16", "misaligned_q", "misaligned_wq", "simple_kernels"])
def test_int8_linear_fallback_paths(case, monkeypatch):
    check_int8_linear_fallback(case, 21, 37, 64, 72 + 3, monkeypatch)


def test_int8_linear_tensor_cores_batch_dims():
    q = int8(2, 5, 96, device=DEV)
    wq = int8(48, 96, device=DEV)
    qs, ws = scales(2, 5, device=DEV), scales(48, device=DEV)
    out = E.int8_linear(q, qs, wq, ws, None, torch.bfloat16)
    assert out.shape == (2, 5, 48)
    assert torch.equal(out, reference.int8_linear(q, qs, wq, ws, None, torch.bfloat16))


# ---------------------------------------------------------------- int8_linear on wgmma (sm_90a, opt-in)

WGMMA_ENV = "EFFDL_CUDA_WGMMA"

# 128 x 128 tiles of two 64-row warpgroups, 128-byte K blocks: ragged M/N (tails of the tile, of a
# warpgroup and of the n8 column groups), K a multiple of 16 but not of 128; the last three split K
WGMMA_SHAPES = [
    (128, 128, 128),
    (130, 72, 112),
    (257, 129, 208),
    (128, 1, 16),
    (200, 40, 656),
    (1030, 520, 1024),
    (300, 256, 4096),
    (128, 64, 8192),
]


@pytest.fixture
def wgmma():
    """Runs a test only where int8_linear would take the wgmma kernel: opted in through the
    environment of the whole run (the device check's wgmma phase), an sm_90a build, an sm_90 GPU."""
    if os.environ.get(WGMMA_ENV) != "1":
        pytest.skip(f"the wgmma kernel is opt-in: run with {WGMMA_ENV}=1 (bench/device_check.sh has a phase for it)")
    if "9.0a" not in (_ext.build_info().get("cuda_archs") or ""):
        pytest.skip("effdl was built without sm_90a (TORCH_CUDA_ARCH_LIST without 9.0a)")
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"the wgmma kernel runs on compute capability 9.0, not {torch.cuda.get_device_capability()}")


@pytest.mark.parametrize(("M", "N", "K"), WGMMA_SHAPES)
def test_int8_linear_wgmma_exact(M, N, K, wgmma):
    """Unit scales, no bias: the exact integer product, rounded once to fp32."""
    q, wq = int8(M, K, device=DEV), int8(N, K, device=DEV)
    out = E.int8_linear(q, torch.ones(M, device=DEV), wq, torch.ones(N, device=DEV))
    assert torch.equal(out, reference.int8_matmul_exact(q, wq).float())


@pytest.mark.parametrize(("M", "N", "K"), WGMMA_SHAPES)
@pytest.mark.parametrize("out_dtype", [None, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_int8_linear_wgmma_epilogue(M, N, K, out_dtype, wgmma):
    """Scales, bias, output cast: the reference's fp32 epilogue in the same order, bit for bit."""
    q, wq = int8(M, K, device=DEV), int8(N, K, device=DEV)
    qs, ws, bias = scales(M, device=DEV), scales(N, device=DEV), rand(N, device=DEV)
    out = E.int8_linear(q, qs, wq, ws, bias, out_dtype)
    assert torch.equal(out, reference.int8_linear(q, qs, wq, ws, bias, out_dtype))


def test_int8_linear_wgmma_agrees_with_mma_sync(wgmma, monkeypatch):
    M, N, K = 384, 768, 768
    q, wq = int8(M, K, device=DEV), int8(N, K, device=DEV)
    qs, ws, bias = scales(M, device=DEV), scales(N, device=DEV), rand(N, device=DEV)
    fast = E.int8_linear(q, qs, wq, ws, bias, torch.bfloat16)
    monkeypatch.delenv(WGMMA_ENV)
    assert torch.equal(E.int8_linear(q, qs, wq, ws, bias, torch.bfloat16), fast)


def test_int8_linear_wgmma_at_the_int32_bound(wgmma):
    K = reference.INT8_MAX_K // 16 * 16
    q = torch.full((128, K), -128, dtype=torch.int8, device=DEV)
    wq = torch.stack([torch.full((K,), -128, dtype=torch.int8), torch.full((K,), 127, dtype=torch.int8)]).to(DEV)
    ones_m, ones_n = torch.ones(128, device=DEV), torch.ones(2, device=DEV)
    out = E.int8_linear(q, ones_m, wq, ones_n)
    assert out[127, 0].item() == float(K * 128 * 128) and out[127, 1].item() == float(-K * 128 * 127)
    assert torch.equal(out, reference.int8_linear(q, ones_m, wq, ones_n))


@pytest.mark.parametrize("case", ["m_127", "k_not_multiple_of_16", "misaligned_q", "misaligned_wq", "simple_kernels"])
def test_int8_linear_wgmma_fallback_paths(case, wgmma, monkeypatch):
    """Just outside the wgmma conditions the other kernels answer, with the same bits."""
    check_int8_linear_fallback(case, 127 if case == "m_127" else 160, 37, 256, 200 + 3, monkeypatch)


# ---------------------------------------------------------------- int8_weight_linear (GEMV, M <= 16)


@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
@pytest.mark.parametrize(
    ("M", "N", "K"), [(1, 4096, 4096), (1, 37, 16), (4, 130, 208), (16, 64, 1024), (7, 5, 48)]
)
def test_int8_weight_linear_gemv(M, N, K, dtype):
    x = rand(M, K, dtype=dtype, device=DEV)
    wq, ws, bias = int8(N, K, device=DEV), scales(N, device=DEV), rand(N, dtype=dtype, device=DEV)
    y = E.int8_weight_linear(x, wq, ws, bias)
    ref = w8_oracle(x, wq, ws, bias)
    assert y.dtype == dtype and y.shape == (M, N)
    assert rel_err(y, ref) <= (1e-5 if dtype == torch.float32 else 1e-2)


def test_int8_weight_linear_gemv_exact_on_small_integers():
    M, N, K = 16, 70, 512
    x = small_ints(M, K, lo=-3, hi=3)
    wq = int8(N, K, device=DEV)
    y = E.int8_weight_linear(x, wq, torch.ones(N, device=DEV))
    assert torch.equal(y.double(), x.double() @ wq.double().t())  # |y| < 2^24: every fp32 sum exact


@pytest.mark.parametrize("case", ["m_17", "k_not_multiple_of_16", "misaligned_x", "misaligned_wq"])
def test_int8_weight_linear_fallback_paths(case):
    M, N, K = 3, 45, 64
    if case == "m_17":
        M = 17
    if case == "k_not_multiple_of_16":
        K = 40
    x, wq, ws = rand(M, K, device=DEV), int8(N, K, device=DEV), scales(N, device=DEV)
    if case == "misaligned_x":
        x = misaligned(x)
    if case == "misaligned_wq":
        wq = misaligned(wq)
    y = E.int8_weight_linear(x, wq, ws)
    assert rel_err(y, w8_oracle(x, wq, ws)) <= 1e-5


# ---------------------------------------------------------------- quantize_rows (one pass, rows up to 8192)


@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
@pytest.mark.parametrize(
    ("R", "K"), [(1, 1), (3, 255), (5, 256), (2, 4096), (7, 8192), (2, 8193), (300, 100)]
)
def test_quantize_rows_one_pass_and_long_rows(R, K, dtype):
    """Up to 8192 columns the one-pass kernel, past it the two-pass one: both bit for bit the reference."""
    x = rand(R, K, dtype=dtype, device=DEV)
    x[0, K // 2] = 0  # a zero among the data
    q, scale = E.quantize_rows(x)
    ref_q, ref_scale = reference.quantize_rows(x)
    assert torch.equal(q, ref_q)
    assert torch.equal(scale.view(torch.int32), ref_scale.view(torch.int32))


@pytest.mark.parametrize("K", [300, 9000])
def test_quantize_rows_nan_row_raises(K):
    x = rand(4, K, device=DEV)
    x[2, K - 1] = float("nan")
    with pytest.raises(RuntimeError, match="row 2"):
        E.quantize_rows(x)


def test_quantize_rows_fast_and_simple_kernels_agree(monkeypatch):
    x = rand(9, 512, dtype=torch.bfloat16, device=DEV)
    q, qs = E.quantize_rows(x)
    monkeypatch.setenv("EFFDL_CUDA_SIMPLE_KERNELS", "1")
    q2, qs2 = E.quantize_rows(x)
    assert torch.equal(q2, q) and torch.equal(qs2, qs)


def test_int8_weight_linear_fast_and_simple_kernels_agree(monkeypatch):
    x = rand(9, 512, dtype=torch.bfloat16, device=DEV)
    wq, ws = int8(70, 512, device=DEV), scales(70, device=DEV)
    fast = E.int8_weight_linear(x, wq, ws)
    monkeypatch.setenv("EFFDL_CUDA_SIMPLE_KERNELS", "1")
    assert rel_err(E.int8_weight_linear(x, wq, ws), fast) <= 4e-3


# ---------------------------------------------------------------- dwsep_conv2d (tiled: 32 pixels x 64 channels)

DWSEP_CASES = [  # (B, C, H, W, Cout, k, stride, pad, dilation): ragged pixel / channel / Cout tiles
    (1, 8, 5, 5, 4, 3, 1, 1, 1),
    (2, 33, 7, 6, 65, 3, 2, 1, 1),
    (1, 64, 9, 9, 130, 3, 1, 1, 1),
    (4, 144, 28, 28, 24, 3, 1, 1, 1),
    (1, 40, 11, 11, 24, 5, 2, 4, 2),
]


@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
@pytest.mark.parametrize("case", DWSEP_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("simple", [False, True], ids=["tiled", "simple"])
def test_dwsep_conv2d_tiled_and_simple(case, dtype, simple, monkeypatch):
    if simple:
        monkeypatch.setenv("EFFDL_CUDA_SIMPLE_KERNELS", "1")
    B, C, H, W, Cout, k, stride, pad, dil = case
    x = rand(B, C, H, W, dtype=dtype, device=DEV).contiguous(memory_format=torch.channels_last)
    args = (
        rand(C, 1, k, k, dtype=dtype, device=DEV),
        rand(C, dtype=dtype, device=DEV),
        rand(Cout, C, 1, 1, dtype=dtype, device=DEV, scale=C**-0.5),
        rand(Cout, dtype=dtype, device=DEV),
        [stride, stride],
        [pad, pad],
        [dil, dil],
        "relu6",
        "relu",
    )
    y = E.dwsep_conv2d(x, *args)
    ref = reference.dwsep_conv2d(
        x.double(), *(a.double() if isinstance(a, torch.Tensor) else a for a in args)
    )
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(y, ref) <= (1e-5 if dtype == torch.float32 else 1e-2)
