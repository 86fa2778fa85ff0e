"""Layers with fake-quantized inputs and weights (what ``prepare_ptq``/``prepare_qat``
swap in) and the container a conversion leaves where no int8 kernel can take over.

:class:`QuantLinear` and :class:`QuantConv2d` subclass ``nn.Linear``/``nn.Conv2d``
and keep their parameters (the same ``Parameter`` objects), so optimizers, weight
decay and DDP treat them as before; they add ``input_quant`` and ``weight_quant``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from effdl.quant.fake_quant import WeightFakeQuantize


class QuantLinear(nn.Linear):
    """``nn.Linear`` computing ``F.linear(input_quant(x), weight_quant(weight), bias)``."""

    def __init__(self, in_features: int, out_features: int, input_quant: nn.Module,
                 weight_quant: WeightFakeQuantize, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.input_quant, self.weight_quant = input_quant, weight_quant

    @classmethod
    def from_float(cls, linear: nn.Linear, input_quant: nn.Module, weight_quant: WeightFakeQuantize) -> QuantLinear:
        """Wrap ``linear``'s own parameters (no copy)."""
        mod = cls(linear.in_features, linear.out_features, input_quant, weight_quant,
                  bias=linear.bias is not None, device="meta")
        mod.weight, mod.bias = linear.weight, linear.bias
        return mod.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quant(x), self.weight_quant(self.weight), self.bias)


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` convolving ``input_quant(x)`` with ``weight_quant(weight)``.

    The input is quantized before padding, so zero padding stays exactly zero."""

    def __init__(self, *args, input_quant: nn.Module, weight_quant: WeightFakeQuantize, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.input_quant, self.weight_quant = input_quant, weight_quant

    @classmethod
    def from_float(cls, conv: nn.Conv2d, input_quant: nn.Module, weight_quant: WeightFakeQuantize) -> QuantConv2d:
        """Wrap ``conv``'s own parameters (no copy)."""
        mod = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode, device="meta", input_quant=input_quant, weight_quant=weight_quant)
        mod.weight, mod.bias = conv.weight, conv.bias
        return mod.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quant(x), self.weight_quant(self.weight), self.bias)


class QuantizedLayer(nn.Sequential):
    """A converted layer whose input quantization no int8 kernel performs:
    ``input_quant`` (a frozen fake-quantizer) followed by ``layer`` (a weight-only
    ``QLinear``, or a float conv/linear holding the dequantized weights)."""

    def __init__(self, input_quant: nn.Module, layer: nn.Module) -> None:
        super().__init__(OrderedDict(input_quant=input_quant, layer=layer))
