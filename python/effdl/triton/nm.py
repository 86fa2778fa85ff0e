"""Triton kernels of the N:M ops: ``nm_compress``, ``nm_decompress`` and ``nm_linear``.

The storage is :mod:`effdl.formats` (``values[rows, K*n/m]`` + ``meta``, the
packed keep-mask). Every kernel decodes the mask the same way (:func:`_expand`):
the ``m`` bits of a column's group come from at most three meta bytes, the
column is kept when its bit is set, and its stored value sits at
``group * n + popcount(bits below it)``.

``nm_linear`` expands each ``[BLOCK_N, BLOCK_K]`` tile of the compressed weight
to a dense tile in registers and feeds ``tl.dot``: the weight is read from
memory in compressed form (``n/m`` of the values plus 1 bit per column) while
the product runs on the tensor cores. Gathering activations per kept column
instead would also read ``n/m`` of ``x`` but turns the product into scalar
multiply-adds, since each output row then needs its own gather.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from effdl import _checks, formats, ops
from effdl.triton._dot import FP64_TILE, accumulator, dot
from effdl.triton._runtime import (
    as_rows,
    check_device,
    configs,
    failure_flag,
    failure_message,
    raise_on_failure,
    tile_grid,
    triton_op,
    wrap_triton,
)

# ---------------------------------------------------------------- mask decoding


@triton.jit
def _popcount16(v):
    """Set bits of each int32 in ``v`` (values below 2**16)."""
    v = v - ((v >> 1) & 0x5555)
    v = (v & 0x3333) + ((v >> 2) & 0x3333)
    v = (v + (v >> 4)) & 0x0F0F
    return (v + (v >> 8)) & 0x1F


@triton.jit
def _group_bits(meta_row, group, m, meta_bytes, stride_mb, valid):
    """The ``m`` keep-bits of ``group`` as int32 (bit p: position p of the group kept).
    ``meta_row`` points at each element's meta row; a group of m <= 16 bits that
    starts at any bit spans at most three bytes."""
    start = group * m
    byte = start // 8
    b0 = tl.load(meta_row + byte * stride_mb, mask=valid & (byte < meta_bytes), other=0).to(tl.int32)
    b1 = tl.load(meta_row + (byte + 1) * stride_mb, mask=valid & (byte + 1 < meta_bytes), other=0).to(tl.int32)
    b2 = tl.load(meta_row + (byte + 2) * stride_mb, mask=valid & (byte + 2 < meta_bytes), other=0).to(tl.int32)
    word = b0 | (b1 << 8) | (b2 << 16)
    return (word >> (start % 8)) & ((1 << m) - 1)


@triton.jit
def _expand(values_ptr, meta_ptr, rows, cols, R, K, n, m, meta_bytes,
            stride_vr, stride_vk, stride_mr, stride_mb):
    """The dense weight at ``rows`` x ``cols`` (broadcast index tensors), zero where
    not kept or out of bounds. Bounds hold for any meta: a rank past ``n`` loads nothing."""
    valid = (rows < R) & (cols < K)
    group = cols // m
    pos = cols % m
    bits = _group_bits(meta_ptr + rows.to(tl.int64) * stride_mr, group, m, meta_bytes, stride_mb, valid)
    kept = ((bits >> pos) & 1) != 0
    rank = _popcount16(bits & ((1 << pos) - 1))
    ptrs = values_ptr + rows.to(tl.int64) * stride_vr + (group * n + rank) * stride_vk
    return tl.load(ptrs, mask=valid & kept & (rank < n), other=0.0)


@triton.jit
def _validate_kernel(meta_ptr, failure_ptr, R, K, n, m, meta_bytes, stride_mr, stride_mb,
                     BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """Flag the first row whose mask does not keep exactly ``n`` of every ``m``
    columns or sets a bit past ``K``."""
    pid_g = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    groups = pid_g * BLOCK_G + tl.arange(0, BLOCK_G)
    valid = (rows[:, None] < R) & (groups[None, :] < K // m)
    meta_row = meta_ptr + rows[:, None].to(tl.int64) * stride_mr
    bits = _group_bits(meta_row, groups[None, :], m, meta_bytes, stride_mb, valid)
    bad = tl.max((valid & (_popcount16(bits) != n)).to(tl.int32), axis=1) != 0
    # the bits past K sit in the last byte, above bit K % 8; the first column of programs looks
    tail_valid = (rows < R) & (K % 8 != 0) & (pid_g == 0)
    tail = tl.load(meta_ptr + rows.to(tl.int64) * stride_mr + (K // 8) * stride_mb, mask=tail_valid, other=0)
    bad = bad | (tail_valid & ((tail.to(tl.int32) >> (K % 8)) != 0))
    tl.atomic_min(failure_ptr + rows * 0, rows, mask=bad)


def _validate(values: torch.Tensor, meta: torch.Tensor, n: int, m: int, K: int) -> torch.Tensor:
    """Launch :func:`_validate_kernel`; returns the failure flag (first bad row)."""
    failure = failure_flag(meta)
    R = values.shape[0]
    if R * (K // m) > 0:
        grid = (triton.cdiv(R, 16), triton.cdiv(K // m, 64))
        wrap_triton(_validate_kernel)[grid](meta, failure, R, K, n, m, meta.shape[1], meta.stride(0),
                                            meta.stride(1), BLOCK_R=16, BLOCK_G=64)
    return failure


@failure_message("nm_decompress")
def _decompress_failure(row: int, args: list[int], data) -> str:
    n, m, K = args
    return (f"effdl.nm_decompress: meta row {row} is not a valid {n}:{m} mask (exactly {n} bits per group "
            f"of {m}, none past K={K})")


@failure_message("nm_linear")
def _linear_failure(row: int, args: list[int], data) -> str:
    n, m = args
    return (f"effdl.nm_linear: meta is not a valid {n}:{m} mask (exactly {n} bits per group of {m}); "
            "build it with effdl.nm_compress")


# ---------------------------------------------------------------- nm_compress


@triton.jit
def _compress_kernel(w_ptr, values_ptr, meta_ptr, failure_ptr, R, K, n, m, meta_bytes,
                     stride_wr, stride_wk, stride_vr, stride_vk, stride_mr, stride_mb,
                     M_PAD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_BYTES: tl.constexpr):
    """One program packs ``BLOCK_R`` rows x ``8 * BLOCK_BYTES`` columns: whole meta
    bytes, so no two programs write the same byte. Each column looks at its whole
    group (``M_PAD >= m`` lanes) to learn whether it is kept and its rank."""
    BLOCK_C: tl.constexpr = 8 * BLOCK_BYTES
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    lane = tl.arange(0, M_PAD)
    r2, c2 = rows[:, None], cols[None, :]
    valid = (r2 < R) & (c2 < K)
    group, pos = c2 // m, c2 % m
    w_row = w_ptr + r2.to(tl.int64) * stride_wr
    # the group of every column, lanes on the last axis: [BLOCK_R, BLOCK_C, M_PAD]
    in_group = valid[:, :, None] & (lane[None, None, :] < m)
    g = tl.load(w_row[:, :, None] + (group[:, :, None] * m + lane[None, None, :]) * stride_wk,
                mask=in_group, other=0.0)
    nonzero = (g != 0) & in_group  # NaN counts as nonzero
    count = tl.sum(nonzero.to(tl.int32), axis=2)
    zero = ~nonzero & in_group
    zero_rank = tl.cumsum(zero.to(tl.int32), axis=2)
    # the nonzeros, then the lowest-index zeros up to n (the format's explicit zeros)
    keep = nonzero | (zero & (zero_rank <= (n - count)[:, :, None]))
    before = lane[None, None, :] < pos[:, :, None]
    rank = tl.sum((keep & before).to(tl.int32), axis=2)
    kept = tl.sum((keep & (lane[None, None, :] == pos[:, :, None])).to(tl.int32), axis=2) != 0
    kept = kept & valid

    w = tl.load(w_row + c2 * stride_wk, mask=kept, other=0.0)
    tl.store(values_ptr + r2.to(tl.int64) * stride_vr + (group * n + rank) * stride_vk, w, mask=kept & (rank < n))
    bad = valid & (pos == 0) & (count > n)
    tl.atomic_min(failure_ptr + r2 * 0 + c2 * 0, r2 * (K // m) + group, mask=bad)

    bits = kept.to(tl.int32) << (c2 % 8)
    packed = tl.sum(tl.reshape(bits, (BLOCK_R, BLOCK_BYTES, 8)), axis=2)
    byte = tl.program_id(1) * BLOCK_BYTES + tl.arange(0, BLOCK_BYTES)
    tl.store(meta_ptr + r2.to(tl.int64) * stride_mr + byte[None, :] * stride_mb, packed.to(tl.uint8),
             mask=(r2 < R) & (byte[None, :] < meta_bytes))


@failure_message("nm_compress")
def _compress_failure(index: int, args: list[int], w) -> str:
    n, m = args
    formats.keep_mask(w, n, m)  # raises the error naming the first bad row and group
    raise AssertionError(f"effdl.nm_compress: the kernel flagged group {index}, which holds at most {n} nonzeros")


@triton_op("nm_compress")
def _nm_compress(w: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    _checks.nm_compress(w, n, m)
    check_device(w, "nm_compress")
    R, K = w.shape
    values = w.new_empty(R, K // m * n)
    meta = w.new_empty(R, formats.meta_bytes(K), dtype=torch.uint8)
    if R * K > 0:
        failure = failure_flag(w)
        block_r, block_bytes = 8, 4
        grid = (triton.cdiv(R, block_r), triton.cdiv(meta.shape[1], block_bytes))
        wrap_triton(_compress_kernel)[grid](
            w, values, meta, failure, R, K, n, m, meta.shape[1], w.stride(0), w.stride(1),
            values.stride(0), values.stride(1), meta.stride(0), meta.stride(1),
            M_PAD=triton.next_power_of_2(m), BLOCK_R=block_r, BLOCK_BYTES=block_bytes,
        )
        raise_on_failure(failure, "nm_compress", [n, m], w)
    return values, meta


# ---------------------------------------------------------------- nm_decompress


@triton.jit
def _decompress_kernel(values_ptr, meta_ptr, w_ptr, R, K, n, m, meta_bytes,
                       stride_vr, stride_vk, stride_mr, stride_mb,
                       BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R))[:, None]
    cols = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C))[None, :]
    w = _expand(values_ptr, meta_ptr, rows, cols, R, K, n, m, meta_bytes, stride_vr, stride_vk, stride_mr, stride_mb)
    tl.store(w_ptr + rows.to(tl.int64) * K + cols, w, mask=(rows < R) & (cols < K))


@triton_op("nm_decompress")
def _nm_decompress(values: torch.Tensor, meta: torch.Tensor, n: int, m: int) -> torch.Tensor:
    K = _checks.nm_storage(values, meta, n, m, "nm_decompress")
    check_device(values, "nm_decompress")
    R = values.shape[0]
    w = values.new_empty(R, K)
    if R * K > 0:
        failure = _validate(values, meta, n, m, K)
        grid = (triton.cdiv(R, 16), triton.cdiv(K, 64))
        wrap_triton(_decompress_kernel)[grid](
            values, meta, w, R, K, n, m, meta.shape[1], values.stride(0), values.stride(1),
            meta.stride(0), meta.stride(1), BLOCK_R=16, BLOCK_C=64,
        )
        raise_on_failure(failure, "nm_decompress", [n, m, K])
    return w


# ---------------------------------------------------------------- nm_linear


def _linear_configs():
    gpu = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in (
            (16, 64, 64, 4, 4),  # decode: few rows, many columns
            (16, 128, 64, 4, 4),
            (32, 64, 64, 4, 4),
            (64, 64, 64, 4, 3),
            (64, 128, 32, 4, 3),
            (128, 64, 32, 4, 3),
            (128, 128, 32, 8, 3),
        )
    ]
    return configs(gpu, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16})


@triton.jit
def _linear_kernel(x_ptr, values_ptr, meta_ptr, bias_ptr, y_ptr, M, N, K, n, m, meta_bytes,
                   stride_xm, stride_xk, stride_vr, stride_vk, stride_mr, stride_mb,
                   HAS_BIAS: tl.constexpr, FP64: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``y[M, N] = x[M, K] @ W[N, K].T + bias``, W expanded tile by tile from N:M storage."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = accumulator(BLOCK_M, BLOCK_N, FP64)
    x_rows = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(x_rows + rk[None, :] * stride_xk, mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        # the weight tile, K-major: [BLOCK_K, BLOCK_N]
        b = _expand(values_ptr, meta_ptr, rn[None, :], rk[:, None], N, K, n, m, meta_bytes,
                    stride_vr, stride_vk, stride_mr, stride_mb)
        acc = dot(a, b, acc)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(acc.dtype)[None, :]
    y = y_ptr + rm[:, None].to(tl.int64) * N + rn[None, :]
    tl.store(y, acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


_linear_kernel_tuned = triton.autotune(configs=_linear_configs(), key=["M", "N", "K"])(_linear_kernel)
_FP64_BLOCKS = {"BLOCK_M": FP64_TILE, "BLOCK_N": FP64_TILE, "BLOCK_K": FP64_TILE}


@triton_op("nm_linear")
def _nm_linear(x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, n: int, m: int,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    K = _checks.nm_linear(x, values, meta, n, m, bias)
    check_device(x, "nm_linear")
    N = values.shape[0]
    x2 = as_rows(x)
    M = x2.shape[0]
    y = x.new_empty(M, N)
    if M * N > 0:
        failure = _validate(values, meta, n, m, K)
        fp64 = x.dtype == torch.float64
        kernel, blocks = (_linear_kernel, _FP64_BLOCKS) if fp64 else (_linear_kernel_tuned, {})
        wrap_triton(kernel)[tile_grid(M, N)](
            x2, values, meta, bias if bias is not None else values, y, M, N, K, n, m, meta.shape[1],
            x2.stride(0), x2.stride(1), values.stride(0), values.stride(1), meta.stride(0), meta.stride(1),
            HAS_BIAS=bias is not None, FP64=fp64, **blocks,
        )
        raise_on_failure(failure, "nm_linear", [n, m])
    return y.reshape(*x.shape[:-1], N)


# sparse fine-tuning through the Triton forward: the effdl op's own backward
_nm_linear.register_autograd(ops._nm_linear_backward, setup_context=ops._nm_linear_setup)


# ---------------------------------------------------------------- public functions


def nm_compress(w: torch.Tensor, n: int = 2, m: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton :func:`effdl.ops.nm_compress`: ``w[rows, K]`` (N:M sparse) ->
    ``(values[rows, K*n/m], meta[rows, ceil(K/8)] uint8)``."""
    return torch.ops.effdl_triton.nm_compress(w, n, m)


def nm_decompress(values: torch.Tensor, meta: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Triton :func:`effdl.ops.nm_decompress`: the dense ``[rows, K]`` weight."""
    return torch.ops.effdl_triton.nm_decompress(values, meta, n, m)


def nm_linear(x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, n: int = 2, m: int = 4,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """Triton :func:`effdl.ops.nm_linear`: ``x[*, K] @ W.T + bias`` -> ``[*, N]`` in ``x``'s
    dtype, fp32 accumulation (fp64 for fp64). Differentiable in ``x``, ``values``, ``bias``."""
    return torch.ops.effdl_triton.nm_linear(x, values, meta, n, m, bias)
