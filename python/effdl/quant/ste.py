"""Fake quantization with the straight-through estimator (STE).

``round`` has zero gradient almost everywhere, so quantization-aware training
pretends it is the identity: the gradient passes unchanged where the input lies
inside the grid's clipping range ``[min_val + qmin*scale, min_val + qmax*scale]``
and is zero outside it, where the clamp really does cut the input off.
The scale and offset come from observers and get no gradient.
"""

from __future__ import annotations

import torch


class FakeQuantizeSTE(torch.autograd.Function):
    """``round(clamp((t - min_val) / scale)) * scale + min_val`` with the STE gradient.

    ``scale`` and ``min_val`` broadcast against ``t`` (already shaped per channel);
    the arithmetic runs in their dtype and the result is cast back to ``t``'s dtype.
    """

    @staticmethod
    def forward(ctx, t: torch.Tensor, scale: torch.Tensor, min_val: torch.Tensor, qmin: int, qmax: int):
        v = (t.to(scale.dtype) - min_val) / scale
        ctx.save_for_backward((v >= qmin) & (v <= qmax))
        return (torch.round(v).clamp_(qmin, qmax) * scale + min_val).to(t.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None, None
