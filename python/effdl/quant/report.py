"""Which layers does quantization hurt? Per-layer signal-to-quantization-noise ratios."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from effdl.nn import QLinear
from effdl.quant.modules import QuantConv2d, QuantizedLayer, QuantLinear

QUANTIZED_TYPES = (QuantLinear, QuantConv2d, QuantizedLayer, QLinear)


def sqnr(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``10 * log10(||reference||^2 / ||reference - approx||^2)`` in dB, computed in float64.

    ``inf`` when the two are equal (no noise); ``-inf`` when ``reference`` is all zeros
    but ``approx`` is not. Raises ``ValueError`` on a shape mismatch or empty tensors."""
    if reference.shape != approx.shape:
        raise ValueError(f"sqnr: shapes differ: reference {list(reference.shape)} vs approx {list(approx.shape)}")
    if reference.numel() == 0:
        raise ValueError("sqnr: the tensors are empty")
    ref = reference.detach().to(torch.float64)
    noise = float((ref - approx.detach().to(torch.float64)).square().sum())
    signal = float(ref.square().sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


@dataclass
class LayerSQNR:
    """One quantized layer: ``in_model_db`` compares its output inside the quantized
    model with the float model's (errors of earlier layers included);
    ``alone_db`` feeds it the float model's input, so it is this layer's own damage."""

    name: str
    kind: str
    in_model_db: float
    alone_db: float


@dataclass
class QuantizationReport:
    layers: list[LayerSQNR] = field(default_factory=list)
    output_db: float = math.nan

    def worst(self) -> LayerSQNR:
        """The layer with the lowest SQNR on its own."""
        return min(self.layers, key=lambda layer: layer.alone_db)

    def table(self) -> str:
        width = max([len("layer")] + [len(layer.name) for layer in self.layers])
        kinds = max([len("kind")] + [len(layer.kind) for layer in self.layers])
        lines = [f"{'layer':<{width}}  {'kind':<{kinds}}  {'SQNR in model (dB)':>18}  {'SQNR alone (dB)':>15}"]
        for layer in self.layers:
            lines.append(f"{layer.name:<{width}}  {layer.kind:<{kinds}}  {layer.in_model_db:>18.2f}  "
                         f"{layer.alone_db:>15.2f}")
        lines.append(f"model output SQNR: {self.output_db:.2f} dB")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _quantized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost quantized layers, in module order."""
    found: list[tuple[str, nn.Module]] = []
    for name, mod in model.named_modules():
        if isinstance(mod, QUANTIZED_TYPES) and not any(name.startswith(outer + ".") for outer, _ in found):
            found.append((name, mod))
    return found


def _kind(mod: nn.Module) -> str:
    inner = mod.layer if isinstance(mod, QuantizedLayer) else mod
    mode = f"({inner.mode})" if isinstance(inner, QLinear) else ""
    return type(mod).__name__ + ("/" + type(inner).__name__ if inner is not mod else "") + mode


@torch.no_grad()
def quantization_report(float_model: nn.Module, quant_model: nn.Module, example_input: torch.Tensor,
                        verbose: bool = False) -> QuantizationReport:
    """Per-layer SQNR of ``quant_model`` (prepared or converted) against ``float_model``
    (the same architecture in float) on ``example_input``; both run in eval mode
    and are left in their original modes. Prints the table when ``verbose``."""
    layers = _quantized_layers(quant_model)
    if not layers:
        raise ValueError("quantization_report: quant_model has no quantized layers")
    float_io: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    quant_out: dict[str, torch.Tensor] = {}
    handles = []

    def keep_first(store, name, value):
        store.setdefault(name, value)  # a layer called twice is compared on its first call

    for name, qmod in layers:
        try:
            fmod = float_model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"quantization_report: float_model has no layer {name!r} to compare with") from None
        handles.append(fmod.register_forward_hook(
            lambda m, args, out, name=name: keep_first(float_io, name, (args[0], out))))
        handles.append(qmod.register_forward_hook(
            lambda m, args, out, name=name: keep_first(quant_out, name, out)))
    modes = {mod: mod.training for model in (float_model, quant_model) for mod in model.modules()}
    try:
        float_model.eval()
        quant_model.eval()
        y_float, y_quant = float_model(example_input), quant_model(example_input)
        report = QuantizationReport(output_db=sqnr(y_float, y_quant))
        for h in handles:
            h.remove()
        handles.clear()
        for name, qmod in layers:
            if name not in float_io or name not in quant_out:
                continue  # not reached by this input
            x_float, y_layer = float_io[name]
            report.layers.append(LayerSQNR(name, _kind(qmod), sqnr(y_layer, quant_out[name]),
                                           sqnr(y_layer, qmod(x_float))))
    finally:
        for h in handles:
            h.remove()
        for mod, training in modes.items():
            mod.training = training
    if verbose:
        print(report.table())
    return report
