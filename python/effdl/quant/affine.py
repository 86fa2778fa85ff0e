"""One-shot affine quantization of a tensor from its own range (the textbook functions).

>>> q, scale, min_val = quantize_tensor(t)                 # 8-bit asymmetric per tensor, q uint8
>>> t_hat = dequantize_tensor(q, scale, min_val)            # q * scale + min_val
>>> q, scale, _ = quantize_tensor(w, 8, symmetric=True, axis=0)  # QLinear's weight format, q int8
"""

from __future__ import annotations

import torch

from effdl.quant.scheme import QParams, QScheme, check_quantizable, qparams_from_range, tensor_range


def compute_qparams(t: torch.Tensor, num_bits: int = 8, *, symmetric: bool = False, axis: int | None = None) -> QParams:
    """The :class:`QParams` that cover ``t``'s full range (min-max) under the given scheme.

    Raises ``ValueError`` for an empty or non-finite ``t``, ``num_bits`` outside
    2..8 or an ``axis`` out of range."""
    scheme = QScheme(num_bits, symmetric, axis)
    check_quantizable(t, "t", "quantize_tensor")
    scheme.channel_axis(t.dim())  # axis errors before any work
    lo, hi = tensor_range(t, scheme)
    return qparams_from_range(lo, hi, scheme)


def quantize_tensor(
    t: torch.Tensor, num_bits: int = 8, *, symmetric: bool = False, axis: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``t`` with min-max parameters computed from ``t`` itself.

    Args:
        t: a non-empty, finite floating-point tensor of any shape.
        num_bits: 2..8.
        symmetric: False (default): asymmetric onto ``[0, 2^b - 1]``,
            ``scale = (max - min) / (2^b - 1)``, ``q = clamp(round((t - min) / scale))``;
            True: signed onto ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, ``scale = max|t| / (2^(b-1) - 1)``.
        axis: None for one scale per tensor, or the channel dimension for one
            scale (and min) per slice along it.

    Returns:
        ``(q, scale, min_val)``: ``q`` of ``t``'s shape, uint8 (asymmetric) or int8
        (symmetric); ``scale`` and ``min_val`` 0-dim (per tensor) or ``[C]`` (per
        channel), float32 (float64 for a float64 ``t``); ``min_val`` is 0 for
        symmetric schemes. A constant tensor gets the floor scale and ``q = 0``,
        so it round-trips exactly.
    """
    qp = compute_qparams(t, num_bits, symmetric=symmetric, axis=axis)
    return qp.quantize(t), qp.scale, qp.min_val


def dequantize_tensor(
    q: torch.Tensor, scale: torch.Tensor, min_val: torch.Tensor, *, axis: int | None = None
) -> torch.Tensor:
    """``q * scale + min_val`` as float (the dtype of ``scale``).

    ``scale``/``min_val`` are 0-dim (or one element) for per-tensor parameters,
    or ``[C]`` together with the ``axis`` they run along for per-channel ones."""
    if q.dtype not in (torch.uint8, torch.int8):
        raise ValueError(f"dequantize_tensor: q must be uint8 or int8, got {q.dtype}")
    scale, min_val = torch.as_tensor(scale), torch.as_tensor(min_val)
    if scale.shape != min_val.shape:
        raise ValueError(f"dequantize_tensor: scale {list(scale.shape)} and min_val {list(min_val.shape)} "
                         "must have the same shape")
    if axis is None and scale.numel() != 1:
        raise ValueError(f"dequantize_tensor: scale has {scale.numel()} elements; pass the axis they run along")
    scheme = QScheme(8, q.dtype == torch.int8, axis)  # the bit width does not enter dequantization
    if axis is None:
        scale, min_val = scale.reshape(()), min_val.reshape(())
    return QParams(scale, min_val, scheme).dequantize(q)


def fake_quantize(t: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """``dequantize(quantize(t))`` with given parameters, in ``t``'s dtype.

    Differentiable with the straight-through estimator: ``d out / d t`` is 1 where
    ``t`` lies inside ``qparams.clip_range()`` and 0 outside."""
    return qparams.fake_quantize(t)
