"""Triton kernel of ``nm_int8_linear``: the W8A8 linear with its int8 weight in N:M storage.

Each ``[BLOCK_K, BLOCK_N]`` weight tile is expanded from ``values_q`` + ``meta``
in registers (the decoding of :mod:`effdl.triton.nm`) and multiplied on the int8
tensor cores into an exact int32 accumulator; the epilogue is ``int8_linear``'s:
``float(acc) * q_scale * w_scale + bias``, one cast. Inference only, like the op.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from effdl import _checks
from effdl.triton._dot import dot
from effdl.triton._runtime import (
    as_rows,
    check_device,
    failure_message,
    raise_on_failure,
    tile_grid,
    triton_op,
    wrap_triton,
)
from effdl.triton.int8 import _gemm_configs, int8_epilogue
from effdl.triton.nm import _expand, _validate


@triton.autotune(configs=_gemm_configs(), key=["M", "N", "K"])
@triton.jit
def _nm_int8_linear_kernel(q_ptr, q_scale_ptr, values_ptr, meta_ptr, w_scale_ptr, bias_ptr, y_ptr,
                           M, N, K, n, m, meta_bytes, stride_qm, stride_qk, stride_sm,
                           stride_vr, stride_vk, stride_mr, stride_mb,
                           HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_K: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    q_rows = q_ptr + rm[:, None].to(tl.int64) * stride_qm
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(q_rows + rk[None, :] * stride_qk, mask=(rm[:, None] < M) & (rk[None, :] < K), other=0)
        # the int8 weight tile, K-major: [BLOCK_K, BLOCK_N], zero where not kept
        b = _expand(values_ptr, meta_ptr, rn[None, :], rk[:, None], N, K, n, m, meta_bytes,
                    stride_vr, stride_vk, stride_mr, stride_mb)
        acc = dot(a, b, acc)
    int8_epilogue(acc, rm, rn, M, N, q_scale_ptr, stride_sm, w_scale_ptr, bias_ptr, y_ptr, HAS_BIAS)


@failure_message("nm_int8_linear")
def _failure(row: int, args: list[int], data) -> str:
    n, m = args
    return (f"effdl.nm_int8_linear: meta is not a valid {n}:{m} mask (exactly {n} bits per group of {m}); "
            "build it with effdl.nm_compress")


@triton_op("nm_int8_linear")
def _nm_int8_linear(q: torch.Tensor, q_scale: torch.Tensor, values_q: torch.Tensor, meta: torch.Tensor,
                    n: int, m: int, w_scale: torch.Tensor, bias: torch.Tensor | None = None,
                    out_dtype: torch.dtype | None = None) -> torch.Tensor:
    out_dtype = _checks.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype)
    check_device(q, "nm_int8_linear")
    q2, s = as_rows(q), q_scale.reshape(-1)
    M, K = q2.shape
    N = values_q.shape[0]
    y = q.new_empty(M, N, dtype=out_dtype)
    if M * N > 0:
        failure = _validate(values_q, meta, n, m, K)
        wrap_triton(_nm_int8_linear_kernel)[tile_grid(M, N)](
            q2, s, values_q, meta, w_scale, bias if bias is not None else w_scale, y, M, N, K, n, m,
            meta.shape[1], q2.stride(0), q2.stride(1), s.stride(0), values_q.stride(0), values_q.stride(1),
            meta.stride(0), meta.stride(1), HAS_BIAS=bias is not None,
        )
        raise_on_failure(failure, "nm_int8_linear", [n, m])
    return y.reshape(*q.shape[:-1], N)


def nm_int8_linear(q: torch.Tensor, q_scale: torch.Tensor, values_q: torch.Tensor, meta: torch.Tensor,
                   n: int, m: int, w_scale: torch.Tensor, bias: torch.Tensor | None = None,
                   out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Triton :func:`effdl.ops.nm_int8_linear`: ``q[*, K]`` int8 times the N:M int8 weight
    (``values_q[N, K*n/m]`` + ``meta``), exact int32, fused scale/bias/cast -> ``[*, N]``."""
    return torch.ops.effdl_triton.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype)
