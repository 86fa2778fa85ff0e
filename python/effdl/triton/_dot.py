"""The one matrix-product step every effdl Triton kernel uses."""

from __future__ import annotations

import triton
import triton.language as tl

# the M, N and K block of float64 products (see dot)
FP64_TILE = 16


@triton.jit
def dot(a, b, acc):
    """``acc + a @ b``. float32 operands multiply in full precision (``"ieee"``: TF32
    would miss the 1e-5 contract), 16-bit operands on the tensor cores into a
    float32 ``acc``, int8 exactly into an int32 ``acc``. float64 multiplies and
    reduces in registers: triton's fp64 MMA lowering fails on some operand layouts
    ("fp64 don't support largeK MMA"), so float64 launches use :data:`FP64_TILE`-sized
    blocks to keep the ``[M, K, N]`` product in registers."""
    if a.dtype == tl.float64:
        return acc + tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    elif a.dtype == tl.float32:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def accumulator(BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, FP64: tl.constexpr):
    """A zero accumulator tile: float64 for float64 operands, else float32."""
    if FP64:
        return tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        return tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
