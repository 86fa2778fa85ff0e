"""What a quantizer computes: the scheme (bits, symmetry, granularity) and its parameters.

Two affine schemes onto an integer grid, both with ``dequant(q) = q * scale + min_val``:

* asymmetric (min-max): ``scale = (max - min) / (2^b - 1)``, ``min_val = min``,
  ``q = clamp(round((t - min) / scale), 0, 2^b - 1)`` stored as uint8. ``min``
  maps exactly to ``q = 0``; zero is not forced onto the grid (the textbook form).
* symmetric (signed): ``scale = max|t| / (2^(b-1) - 1)``, ``min_val = 0``,
  ``q = clamp(round(t / scale), -(2^(b-1) - 1), 2^(b-1) - 1)`` stored as int8.
  At 8 bits this is exactly :func:`effdl.ops.quantize_rows` / ``QLinear``'s weight format.

Both floor the scale at the smallest normal float32 (as ``quantize_rows`` does), so
a constant tensor gets a valid scale and never a division by zero. ``round`` is
``torch.round`` (half to even), the same rounding as the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from effdl.quant.ste import FakeQuantizeSTE
from effdl.reference import QUANT_SCALE_EPS

MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True)
class QScheme:
    """How to quantize: ``num_bits`` in 2..8, ``symmetric`` (signed grid, zero at 0)
    or asymmetric (min-max), ``axis`` None for one scale per tensor or the channel
    dimension for one scale per slice along it (negative axes count from the end)."""

    num_bits: int = 8
    symmetric: bool = False
    axis: int | None = None

    def __post_init__(self) -> None:
        bits = self.num_bits
        if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
            raise ValueError(f"num_bits must be an int in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, int)):
            raise ValueError(f"axis must be None (per tensor) or an int (per channel), got {self.axis!r}")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.num_bits - 1) - 1) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.num_bits - 1) - 1 if self.symmetric else 2**self.num_bits - 1

    @property
    def dtype(self) -> torch.dtype:
        """The integer container: int8 for symmetric, uint8 for asymmetric (any bit width)."""
        return torch.int8 if self.symmetric else torch.uint8

    def channel_axis(self, dim: int) -> int | None:
        """``axis`` normalised for a tensor of ``dim`` dimensions (None per tensor)."""
        if self.axis is None:
            return None
        if not -dim <= self.axis < dim:
            raise ValueError(f"axis {self.axis} is out of range for a tensor with {dim} dimensions")
        return self.axis % dim

    def describe(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        where = "per tensor" if self.axis is None else f"per channel (axis {self.axis})"
        return f"{self.num_bits}-bit {kind} {where}"


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Quantization arithmetic runs in float32, or float64 for float64 tensors."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_quantizable(t: torch.Tensor, name: str, where: str) -> None:
    """A quantizer's input must be a non-empty, finite floating-point tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{where}: {name} must be a floating-point tensor, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{where}: {name} is empty (shape {list(t.shape)}); there is no range to quantize")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: {name} holds NaN or Inf, which no integer grid can represent")


def _channel_view(v: torch.Tensor, dim: int, axis: int | None) -> torch.Tensor:
    """A per-channel vector ``[C]`` shaped to broadcast along ``axis`` of a ``dim``-D tensor."""
    if axis is None:
        return v
    shape = [1] * dim
    shape[axis] = -1
    return v.reshape(shape)


@dataclass
class QParams:
    """The parameters of one quantizer: ``scale`` and ``min_val`` (the real value of
    ``q = 0``; zero for symmetric schemes), 0-dim per tensor or ``[C]`` per channel,
    in float32 (float64 for float64 data)."""

    scale: torch.Tensor
    min_val: torch.Tensor
    scheme: QScheme

    def _views(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        axis = self.scheme.channel_axis(t.dim())
        if axis is None:
            if self.scale.numel() != 1:
                raise ValueError(f"per-tensor QParams need a single scale, got shape {list(self.scale.shape)}")
        elif self.scale.dim() != 1 or self.scale.shape[0] != t.shape[axis]:
            raise ValueError(f"per-channel QParams have scale of shape {list(self.scale.shape)}, but the tensor "
                             f"has {t.shape[axis]} channels along axis {axis}")
        return _channel_view(self.scale, t.dim(), axis), _channel_view(self.min_val, t.dim(), axis)

    def clip_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The real interval ``[min_val + qmin*scale, min_val + qmax*scale]`` the grid covers."""
        return self.min_val + self.scheme.qmin * self.scale, self.min_val + self.scheme.qmax * self.scale

    def quantize(self, t: torch.Tensor) -> torch.Tensor:
        """``clamp(round((t - min_val) / scale), qmin, qmax)`` in ``scheme.dtype``."""
        scale, min_val = self._views(t)
        v = (t.to(scale.dtype) - min_val) / scale
        return torch.round(v).clamp_(self.scheme.qmin, self.scheme.qmax).to(self.scheme.dtype)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        """``q * scale + min_val`` in float32 (float64 if the parameters are)."""
        scale, min_val = self._views(q)
        return q.to(scale.dtype) * scale + min_val

    def fake_quantize(self, t: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(t))`` in ``t``'s dtype, differentiable with the
        straight-through estimator (:class:`~effdl.quant.ste.FakeQuantizeSTE`)."""
        scale, min_val = self._views(t)
        return FakeQuantizeSTE.apply(t, scale, min_val, self.scheme.qmin, self.scheme.qmax)


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, scheme: QScheme) -> QParams:
    """QParams covering ``[lo, hi]`` (0-dim or ``[C]`` tensors) under ``scheme``."""
    lo, hi = lo.to(compute_dtype(lo.dtype)), hi.to(compute_dtype(hi.dtype))
    if scheme.symmetric:
        absmax = torch.maximum(lo.abs(), hi.abs())
        scale = torch.clamp(absmax / scheme.qmax, min=QUANT_SCALE_EPS)
        return QParams(scale, torch.zeros_like(scale), scheme)
    width = hi - lo
    if not bool(torch.isfinite(width).all()):
        raise ValueError(f"the range [{lo.min().item()}, {hi.max().item()}] is too wide to represent in {lo.dtype}")
    scale = torch.clamp(width / scheme.qmax, min=QUANT_SCALE_EPS)
    return QParams(scale, lo.clone(), scheme)


def channel_rows(t: torch.Tensor, scheme: QScheme) -> torch.Tensor:
    """``t`` as ``[C, N]`` rows, one per channel (a single row per tensor), in its compute dtype."""
    axis = scheme.channel_axis(t.dim())
    t = t.detach().to(compute_dtype(t.dtype))
    if axis is None:
        return t.reshape(1, -1)
    return t.movedim(axis, 0).reshape(t.shape[axis], -1)


def tensor_range(t: torch.Tensor, scheme: QScheme) -> tuple[torch.Tensor, torch.Tensor]:
    """``(min, max)`` of ``t``: 0-dim per tensor, ``[C]`` per channel."""
    rows = channel_rows(t, scheme)
    if rows.shape[1] == 0:
        raise ValueError(f"each channel along axis {scheme.axis} is empty (shape {list(t.shape)})")
    lo, hi = rows.amin(1), rows.amax(1)
    if scheme.axis is None:
        lo, hi = lo[0], hi[0]
    return lo, hi
