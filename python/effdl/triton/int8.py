"""Triton kernels of the int8 ops: ``quantize_rows``, ``int8_linear`` (W8A8) and
``int8_weight_linear`` (weight-only). Inference only, like the ops."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from effdl import _checks
from effdl.triton._dot import dot
from effdl.triton._runtime import (
    INTERPRETED,
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

# kernels read globals only as constexprs
FLT_MAX = tl.constexpr(3.4028234663852886e38)
FLT_MIN = tl.constexpr(1.1754943508222875e-38)  # the scale's floor: an all-zero row gets a normal, nonzero scale


def _gemm_configs():
    gpu = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in (
            (16, 64, 128, 4, 4),  # decode
            (16, 128, 64, 4, 4),
            (32, 64, 128, 4, 4),
            (64, 64, 64, 4, 4),
            (64, 128, 64, 4, 3),
            (128, 64, 64, 4, 3),
            (128, 128, 64, 8, 3),
        )
    ]
    return configs(gpu, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16})


# ---------------------------------------------------------------- quantize_rows


@triton.jit
def _round_half_even(v):
    """``torch.round`` of float32 ``v``: nearest, ties to even."""
    f = tl.floor(v)
    frac = v - f  # exact for |v| < 2**23; larger values are already integers
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    up = (frac > 0.5) | ((frac == 0.5) & odd)
    return tl.where(up, f + 1.0, f)


@triton.jit
def _quantize_rows_kernel(x_ptr, q_ptr, scale_ptr, failure_ptr, M, K, stride_xm, stride_xk,
                          BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Two passes over each block of rows: absmax (and NaN/Inf), then round."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    x_rows = x_ptr + rows[:, None].to(tl.int64) * stride_xm
    absmax = tl.zeros((BLOCK_M,), dtype=tl.float32)
    bad = tl.zeros((BLOCK_M,), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        mask = (rows[:, None] < M) & (cols[None, :] < K)
        a = tl.abs(tl.load(x_rows + cols[None, :] * stride_xk, mask=mask, other=0.0).to(tl.float32))
        absmax = tl.maximum(absmax, tl.max(a, axis=1))
        bad = tl.maximum(bad, tl.max((mask & ~(a <= FLT_MAX)).to(tl.int32), axis=1))  # NaN fails <= too
    tl.atomic_min(failure_ptr + rows * 0, rows, mask=(rows < M) & (bad != 0))
    scale = tl.maximum(tl.math.div_rn(absmax, 127.0), FLT_MIN)  # div_rn: IEEE division, as torch
    tl.store(scale_ptr + rows, scale, mask=rows < M)
    q_rows = q_ptr + rows[:, None].to(tl.int64) * K
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        mask = (rows[:, None] < M) & (cols[None, :] < K)
        x = tl.load(x_rows + cols[None, :] * stride_xk, mask=mask, other=0.0).to(tl.float32)
        q = _round_half_even(tl.math.div_rn(x, scale[:, None]))
        q = tl.minimum(tl.maximum(q, -127.0), 127.0)
        tl.store(q_rows + cols[None, :], q.to(tl.int8), mask=mask)


@failure_message("quantize_rows")
def _quantize_failure(row: int, args: list[int], data) -> str:
    return f"effdl.quantize_rows: x holds NaN or Inf (row {row} of x viewed as [-1, K]); int8 cannot represent it"


@triton_op("quantize_rows")
def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _checks.quantize_rows(x)
    check_device(x, "quantize_rows")
    x2 = as_rows(x)
    M, K = x2.shape
    q = x.new_empty(x.shape, dtype=torch.int8)
    scale = x.new_empty(x.shape[:-1], dtype=torch.float32)
    if M > 0:
        failure = failure_flag(x)
        # a block of whole short rows, or 1024-column strips of long ones
        block_k = min(triton.next_power_of_2(max(K, 1)), 1024)
        block_m = max(1, min(16, 4096 // block_k))
        if INTERPRETED:  # fewer, taller programs; K still in several strips
            block_m, block_k = 32, 16
        wrap_triton(_quantize_rows_kernel)[(triton.cdiv(M, block_m),)](
            x2, q, scale, failure, M, K, x2.stride(0), x2.stride(1), BLOCK_M=block_m, BLOCK_K=block_k,
        )
        raise_on_failure(failure, "quantize_rows", [])
    return q, scale


# ---------------------------------------------------------------- int8_linear


@triton.jit
def int8_epilogue(acc, rm, rn, M, N, q_scale_ptr, stride_sm, w_scale_ptr, bias_ptr, y_ptr, HAS_BIAS: tl.constexpr):
    """Store ``float(acc) * q_scale[rm] * w_scale[rn] (+ bias[rn])`` at rows ``rm`` x columns
    ``rn`` of ``y[M, N]``, cast once to y's dtype: the epilogue of every W8A8 kernel."""
    q_scale = tl.load(q_scale_ptr + rm * stride_sm, mask=rm < M, other=0.0)
    w_scale = tl.load(w_scale_ptr + rn, mask=rn < N, other=0.0)
    y = acc.to(tl.float32) * q_scale[:, None] * w_scale[None, :]
    if HAS_BIAS:
        y += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rm[:, None].to(tl.int64) * N + rn[None, :], y, mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.autotune(configs=_gemm_configs(), key=["M", "N", "K"])
@triton.jit
def _int8_linear_kernel(q_ptr, q_scale_ptr, wq_ptr, w_scale_ptr, bias_ptr, y_ptr, M, N, K,
                        stride_qm, stride_qk, stride_sm, stride_wn, stride_wk,
                        HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr):
    """int8 x int8 -> exact int32 tiles, then ``* q_scale * w_scale + bias`` in float32
    and one cast to the output dtype."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    q_rows = q_ptr + rm[:, None].to(tl.int64) * stride_qm
    w_cols = wq_ptr + rn[None, :].to(tl.int64) * stride_wn
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(q_rows + rk[None, :] * stride_qk, mask=(rm[:, None] < M) & (rk[None, :] < K), other=0)
        b = tl.load(w_cols + rk[:, None] * stride_wk, mask=(rk[:, None] < K) & (rn[None, :] < N), other=0)
        acc = dot(a, b, acc)
    int8_epilogue(acc, rm, rn, M, N, q_scale_ptr, stride_sm, w_scale_ptr, bias_ptr, y_ptr, HAS_BIAS)


@triton_op("int8_linear")
def _int8_linear(q: torch.Tensor, q_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                 bias: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    out_dtype = _checks.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    check_device(q, "int8_linear")
    q2, s = as_rows(q), q_scale.reshape(-1)
    M, K = q2.shape
    N = wq.shape[0]
    y = q.new_empty(M, N, dtype=out_dtype)
    if M * N > 0:
        wrap_triton(_int8_linear_kernel)[tile_grid(M, N)](
            q2, s, wq, w_scale, bias if bias is not None else w_scale, y, M, N, K,
            q2.stride(0), q2.stride(1), s.stride(0), wq.stride(0), wq.stride(1), HAS_BIAS=bias is not None,
        )
    return y.reshape(*q.shape[:-1], N)


# ---------------------------------------------------------------- int8_weight_linear


@triton.autotune(configs=_gemm_configs(), key=["M", "N", "K"])
@triton.jit
def _int8_weight_linear_kernel(x_ptr, wq_ptr, w_scale_ptr, bias_ptr, y_ptr, M, N, K,
                               stride_xm, stride_xk, stride_wn, stride_wk,
                               HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                               BLOCK_K: tl.constexpr):
    """``x @ wq.T`` with each int8 tile converted to ``x``'s dtype in registers (exact:
    |wq| <= 128 fits every float mantissa), the per-channel scale applied once to
    the float32 accumulator."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    x_rows = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    w_cols = wq_ptr + rn[None, :].to(tl.int64) * stride_wn
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(x_rows + rk[None, :] * stride_xk, mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        b = tl.load(w_cols + rk[:, None] * stride_wk, mask=(rk[:, None] < K) & (rn[None, :] < N), other=0)
        acc = dot(a, b.to(a.dtype), acc)
    y = acc * tl.load(w_scale_ptr + rn, mask=rn < N, other=0.0)[None, :]
    if HAS_BIAS:
        y += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rm[:, None].to(tl.int64) * N + rn[None, :], y, mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton_op("int8_weight_linear")
def _int8_weight_linear(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                        bias: torch.Tensor | None = None) -> torch.Tensor:
    _checks.int8_weight_linear(x, wq, w_scale, bias)
    check_device(x, "int8_weight_linear")
    x2 = as_rows(x)
    M, K = x2.shape
    N = wq.shape[0]
    y = x.new_empty(M, N)
    if M * N > 0:
        wrap_triton(_int8_weight_linear_kernel)[tile_grid(M, N)](
            x2, wq, w_scale, bias if bias is not None else w_scale, y, M, N, K,
            x2.stride(0), x2.stride(1), wq.stride(0), wq.stride(1), HAS_BIAS=bias is not None,
        )
    return y.reshape(*x.shape[:-1], N)


# ---------------------------------------------------------------- public functions


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton :func:`effdl.ops.quantize_rows`: ``(q int8 [*, K], scale float32 [*])``,
    bit-identical to the reference (IEEE division, ties to even)."""
    return torch.ops.effdl_triton.quantize_rows(x)


def int8_linear(q: torch.Tensor, q_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                bias: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Triton :func:`effdl.ops.int8_linear`: exact int32 products, fused scale/bias/cast epilogue."""
    return torch.ops.effdl_triton.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)


def int8_weight_linear(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
    """Triton :func:`effdl.ops.int8_weight_linear`: the int8 weight dequantized in registers."""
    return torch.ops.effdl_triton.int8_weight_linear(x, wq, w_scale, bias)
