"""The one matrix-product step every effdl Triton kernel uses."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def dot(a, b, acc):
    """``acc + a @ b``. float32/float64 operands multiply in full precision (``"ieee"``:
    TF32 would miss the 1e-5 contract), 16-bit operands on the tensor cores into a
    float32 ``acc``, int8 exactly into an int32 ``acc``."""
    if a.dtype == tl.float32 or a.dtype == tl.float64:
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
