"""Fake-quantization modules: quantize and dequantize in float, so training and
evaluation see exactly the rounding the integer model will do.

* :class:`FakeQuantize` for activations: an observer decides the range (while
  the module is in training mode and its observer is enabled); the tensor is
  fake-quantized with the observer's current parameters.
* :class:`WeightFakeQuantize` for weights: the range is recomputed from the
  current weight on every call, so the grid always matches the weight the
  optimizer just produced (and the int8 weights a conversion stores).
* :class:`DynamicRowFakeQuantize`: what ``QLinear``'s W8A8 kernel does to its
  input, symmetric per row with the scale computed on the fly; no state.

All three pass gradients with the straight-through estimator. Their switches are
uint8 buffers, so they are saved with the model and identical on every DDP rank.
"""

from __future__ import annotations

import torch
from torch import nn

from effdl.quant.observers import Observer
from effdl.quant.ste import FakeQuantizeSTE
from effdl.reference import QUANT_SCALE_EPS


class FakeQuantize(nn.Module):
    """Observer + fake quantization of an activation.

    Observes only in training mode with ``observer_enabled`` set (so evaluating a
    model in the middle of QAT does not move its ranges); fake-quantizes when
    ``fake_quant_enabled`` is set, otherwise passes the input through.
    """

    def __init__(self, observer: Observer) -> None:
        super().__init__()
        if not isinstance(observer, Observer):
            raise TypeError(f"FakeQuantize: observer must be an effdl.quant Observer, got {type(observer).__name__}")
        self.observer = observer
        self.register_buffer("observer_enabled", torch.tensor(1, dtype=torch.uint8))
        self.register_buffer("fake_quant_enabled", torch.tensor(1, dtype=torch.uint8))

    @property
    def scheme(self):
        return self.observer.scheme

    def enable_observer(self, on: bool = True) -> FakeQuantize:
        self.observer_enabled.fill_(int(on))
        return self

    def enable_fake_quant(self, on: bool = True) -> FakeQuantize:
        self.fake_quant_enabled.fill_(int(on))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and bool(self.observer_enabled):
            self.observer(x.detach())
        if not bool(self.fake_quant_enabled):
            return x
        return self.observer.qparams().fake_quantize(x)

    def extra_repr(self) -> str:
        return f"observer_enabled={int(self.observer_enabled)}, fake_quant_enabled={int(self.fake_quant_enabled)}"


class WeightFakeQuantize(nn.Module):
    """Fake quantization of a weight with parameters recomputed from the weight itself
    on every call (the observer is reset first; its buffers hold the latest range)."""

    def __init__(self, observer: Observer) -> None:
        super().__init__()
        if not isinstance(observer, Observer):
            raise TypeError(f"WeightFakeQuantize: observer must be an effdl.quant Observer, "
                            f"got {type(observer).__name__}")
        self.observer = observer

    @property
    def scheme(self):
        return self.observer.scheme

    def qparams(self, weight: torch.Tensor):
        """The parameters for ``weight`` as it is now."""
        self.observer.reset()
        self.observer(weight.detach())
        return self.observer.qparams()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.qparams(weight).fake_quantize(weight)


class DynamicRowFakeQuantize(nn.Module):
    """Symmetric per-row fake quantization over the last dimension with the scale
    computed from each row on the fly: ``scale = max(|row|.max() / qmax, eps)``.

    At 8 bits this is exactly :func:`effdl.ops.quantize_rows`, the input side of
    ``QLinear(mode="dynamic")``."""

    def __init__(self, num_bits: int = 8) -> None:
        super().__init__()
        if isinstance(num_bits, bool) or not isinstance(num_bits, int) or not 2 <= num_bits <= 8:
            raise ValueError(f"num_bits must be an int in 2..8, got {num_bits!r}")
        self.num_bits = num_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] == 0:
            return x
        qmax = 2 ** (self.num_bits - 1) - 1
        ct = torch.float64 if x.dtype == torch.float64 else torch.float32
        absmax = x.detach().to(ct).abs().amax(-1, keepdim=True)
        scale = torch.clamp(absmax / qmax, min=QUANT_SCALE_EPS)
        return FakeQuantizeSTE.apply(x, scale, torch.zeros_like(scale), -qmax, qmax)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, symmetric per row, dynamic"
