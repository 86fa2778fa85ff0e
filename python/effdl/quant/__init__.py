"""Quantization: affine formulas, observers, post-training quantization (PTQ),
quantization-aware training (QAT) and per-layer SQNR reports.

The converted models run their linear layers on effdl's int8 kernels
(:class:`effdl.nn.QLinear`, the same modules :func:`effdl.quantize_` produces);
see :mod:`effdl.quant.workflow` for what runs where.
"""

from effdl.quant.affine import compute_qparams, dequantize_tensor, fake_quantize, quantize_tensor
from effdl.quant.fake_quant import DynamicRowFakeQuantize, FakeQuantize, WeightFakeQuantize
from effdl.quant.modules import QuantConv2d, QuantizedLayer, QuantLinear
from effdl.quant.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
)
from effdl.quant.report import LayerSQNR, QuantizationReport, quantization_report, sqnr
from effdl.quant.scheme import QParams, QScheme, qparams_from_range
from effdl.quant.workflow import (
    calibrate,
    convert,
    convert_ptq,
    convert_qat,
    freeze_observers,
    prepare_ptq,
    prepare_qat,
)

__all__ = [
    "DynamicRowFakeQuantize",
    "FakeQuantize",
    "LayerSQNR",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "QParams",
    "QScheme",
    "QuantConv2d",
    "QuantLinear",
    "QuantizationReport",
    "QuantizedLayer",
    "WeightFakeQuantize",
    "calibrate",
    "compute_qparams",
    "convert",
    "convert_ptq",
    "convert_qat",
    "dequantize_tensor",
    "fake_quantize",
    "freeze_observers",
    "prepare_ptq",
    "prepare_qat",
    "qparams_from_range",
    "quantization_report",
    "quantize_tensor",
    "sqnr",
]
