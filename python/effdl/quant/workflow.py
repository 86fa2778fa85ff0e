"""Post-training quantization and quantization-aware training of whole models.

PTQ::

    prepare_ptq(model, bits=8)         # Linear/Conv2d -> QuantLinear/QuantConv2d with observers
    calibrate(model, batches_of_x)     # a few batches fix the activation ranges
    convert_ptq(model)                 # Linear -> QLinear (int8 kernels), Conv2d -> fake-quant + float conv

QAT::

    prepare_qat(model, bits=4)         # same swap; ranges follow training (moving average)
    train(model, ...)                  # straight-through gradients
    convert_qat(model)                 # same conversion, same outputs as the fake-quant model

What runs where after conversion:

* ``nn.Linear`` becomes :class:`effdl.nn.QLinear` on the int8 kernels. Weights are
  symmetric per output channel (``QLinear``'s storage format); a grid below 8 bits
  is stored exactly in the int8 container (``|q| <= 2^(b-1) - 1``), so a 4-bit
  linear also runs on the int8 kernels with the 4-bit values.
* Activations of a linear layer are by default quantized the way ``QLinear``'s
  W8A8 kernel does it, symmetric per row on the fly (``linear_activations="dynamic"``,
  the default at 8 bits): the converted layer is a plain ``QLinear(mode="dynamic")``
  and the fake-quant model simulated exactly that. With static per-tensor
  activations (``"static"``, the default below 8 bits, since the kernel's
  activations are 8-bit) the converted layer is a :class:`QuantizedLayer`: the
  frozen activation fake-quantizer, then ``QLinear(mode="weight_only")``.
* ``nn.Conv2d`` has no int8 kernel in effdl: it stays simulated, a
  :class:`QuantizedLayer` of the frozen input fake-quantizer and a float conv
  holding the dequantized weights (numerically the quantized conv, float speed).

Either way the converted model computes what the fake-quant model computed, up to
float rounding. Layers already converted by other effdl tools, and layers with
hooks, are left alone (see the printed report / ``effdl.convert.last_report``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from effdl import _checks
from effdl.convert import ConversionReport, FilterFn, _finish, _has_hooks, _set_submodule
from effdl.nn import QLinear
from effdl.quant.fake_quant import DynamicRowFakeQuantize, FakeQuantize, WeightFakeQuantize
from effdl.quant.modules import QuantConv2d, QuantizedLayer, QuantLinear
from effdl.quant.observers import MinMaxObserver, MovingAverageMinMaxObserver, Observer

ObserverFactory = Callable[..., Observer]  # called as factory(num_bits=..., symmetric=..., axis=...)
LINEAR_ACTIVATIONS = ("auto", "dynamic", "static")


def _prepare(model, action, bits, act_bits, weight_observer, activation_observer, linear_activations,
             filter_fn, verbose) -> nn.Module:
    act_bits = bits if act_bits is None else act_bits
    if linear_activations not in LINEAR_ACTIVATIONS:
        raise ValueError(f"{action}: linear_activations must be one of {LINEAR_ACTIVATIONS}, got {linear_activations!r}")
    if linear_activations == "auto":
        linear_activations = "dynamic" if act_bits == 8 else "static"
    # build one of each up front: bad bits or observer arguments fail before the model is touched
    weight_observer(num_bits=bits, symmetric=True, axis=0)
    activation_observer(num_bits=act_bits, symmetric=False, axis=None)

    def weight_quant() -> WeightFakeQuantize:
        return WeightFakeQuantize(weight_observer(num_bits=bits, symmetric=True, axis=0))

    def static_input() -> FakeQuantize:
        return FakeQuantize(activation_observer(num_bits=act_bits, symmetric=False, axis=None))

    report = ConversionReport(action)
    for name, mod in list(model.named_modules()):
        if type(mod) not in (nn.Linear, nn.Conv2d):
            continue
        if filter_fn is not None and not filter_fn(mod, name):
            report.skipped.append((name, "excluded by filter_fn"))
        elif _has_hooks(mod):
            report.skipped.append((name, "has hooks, which the new module would not carry"))
        elif mod.weight.dtype not in _checks.ACT_FLOATS:
            report.skipped.append((name, f"dtype {mod.weight.dtype} unsupported by the int8 kernels"))
        elif type(mod) is nn.Linear:
            act = DynamicRowFakeQuantize(act_bits) if linear_activations == "dynamic" else static_input()
            new = QuantLinear.from_float(mod, act, weight_quant())
            _set_submodule(model, name, new)
            report.converted.append((name, f"weights {bits}-bit per channel, inputs {_describe(act)}"))
        else:
            new = QuantConv2d.from_float(mod, static_input(), weight_quant())
            _set_submodule(model, name, new)
            report.converted.append((name, f"weights {bits}-bit per channel, inputs {act_bits}-bit per tensor"))
    _finish(report, verbose)
    return model


def _describe(quant: nn.Module) -> str:
    if isinstance(quant, DynamicRowFakeQuantize):
        return f"{quant.num_bits}-bit symmetric per row (dynamic)"
    return quant.scheme.describe()


def prepare_ptq(
    model: nn.Module,
    bits: int = 8,
    *,
    act_bits: int | None = None,
    weight_observer: ObserverFactory = MinMaxObserver,
    activation_observer: ObserverFactory = MinMaxObserver,
    linear_activations: str = "auto",
    filter_fn: FilterFn | None = None,
    verbose: bool = True,
) -> nn.Module:
    """Swap every ``nn.Linear``/``nn.Conv2d`` for :class:`QuantLinear`/:class:`QuantConv2d`, in place.

    Args:
        bits: weight bits, 2..8 (symmetric per output channel, the ``QLinear`` format).
        act_bits: activation bits, 2..8 (default: ``bits``).
        weight_observer, activation_observer: observer classes (or
            ``functools.partial`` of them), called with ``num_bits``, ``symmetric``, ``axis``.
        linear_activations: how linear layers quantize their input: ``"dynamic"``
            (symmetric per row on the fly, what ``QLinear``'s W8A8 kernel does),
            ``"static"`` (per tensor, asymmetric, range from the activation observer)
            or ``"auto"`` (dynamic at 8 activation bits, static below).
        filter_fn: ``filter_fn(module, name)`` returning False leaves a layer float.
    Returns:
        ``model``; run :func:`calibrate` next, then :func:`convert_ptq`.
    """
    return _prepare(model, "prepare_ptq", bits, act_bits, weight_observer, activation_observer, linear_activations,
                    filter_fn, verbose)


def prepare_qat(
    model: nn.Module,
    bits: int = 8,
    *,
    act_bits: int | None = None,
    weight_observer: ObserverFactory = MinMaxObserver,
    activation_observer: ObserverFactory = MovingAverageMinMaxObserver,
    linear_activations: str = "auto",
    filter_fn: FilterFn | None = None,
    verbose: bool = True,
) -> nn.Module:
    """Insert fake quantization for training, in place (arguments as :func:`prepare_ptq`).

    Weights are fake-quantized symmetric per output channel from their current
    values at every step (``max|w_row| / (2^(b-1) - 1)``, exactly how ``QLinear``
    stores them at 8 bits); activations per tensor, asymmetric, with a
    moving-average range that is updated in training mode only (linear layers at
    8 bits: symmetric per row, dynamic, as the int8 kernel does). Gradients pass
    straight through inside the clipping range and are zero outside. Create the
    optimizer after this call or before, the parameters are the same objects.
    Train, then :func:`convert_qat`."""
    return _prepare(model, "prepare_qat", bits, act_bits, weight_observer, activation_observer, linear_activations,
                    filter_fn, verbose)


def _fake_quantizers(model: nn.Module) -> list[tuple[str, FakeQuantize]]:
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, FakeQuantize)]


def _batch_input(batch):
    """The model input of a batch: the batch itself, or the first element of an ``(x, y, ...)`` tuple."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def calibrate(model: nn.Module, data: Iterable | torch.Tensor, batches: int = 8) -> nn.Module:
    """Run up to ``batches`` batches of ``data`` (tensors, or ``(x, y)`` tuples as a
    ``DataLoader`` yields; a single tensor is one batch) through a prepared model so
    its activation observers record their ranges.

    The model runs in eval mode (BatchNorm statistics and dropout untouched) and
    the activations are observed in float (fake quantization off while
    calibrating). Afterwards every module's train/eval mode and every quantizer's
    switches are as before. A model whose layers all quantize their inputs
    dynamically (8-bit linear layers) has nothing to record and is returned as is.
    Returns ``model``."""
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"calibrate: batches must be a positive int, got {batches!r}")
    if not any(isinstance(mod, (QuantLinear, QuantConv2d)) for mod in model.modules()):
        raise ValueError("calibrate: the model has no QuantLinear/QuantConv2d layers; call prepare_ptq first")
    quantizers = _fake_quantizers(model)
    if not quantizers:
        return model  # only dynamic (per-row) activations and weights: nothing has a range to record
    modes = {mod: mod.training for mod in model.modules()}
    switches = [(fq, fq.observer_enabled.clone(), fq.fake_quant_enabled.clone()) for _, fq in quantizers]
    model.eval()
    for _, fq in quantizers:
        fq.train().enable_observer(True).enable_fake_quant(False)
    seen = 0
    try:
        for batch in [data] if isinstance(data, torch.Tensor) else data:
            if seen == batches:
                break
            model(_batch_input(batch))
            seen += 1
    finally:
        for mod, training in modes.items():
            mod.training = training
        for fq, observe, fake in switches:
            fq.observer_enabled.copy_(observe)
            fq.fake_quant_enabled.copy_(fake)
    if seen == 0:
        raise ValueError("calibrate: data yielded no batches")
    unseen = [name for name, fq in quantizers if not fq.observer.has_data]
    if unseen:
        warnings.warn(f"calibrate: no data reached the quantizers {unseen} (layers not used by forward?); "
                      "they raise when called", stacklevel=2)
    return model


def freeze_observers(model: nn.Module) -> nn.Module:
    """Stop every activation range from moving (e.g. for the last QAT epochs)."""
    for _, fq in _fake_quantizers(model):
        fq.enable_observer(False)
    return model


def _frozen(quant: nn.Module, name: str) -> nn.Module:
    if isinstance(quant, FakeQuantize):
        if not quant.observer.has_data:
            raise RuntimeError(f"convert: layer {name!r} has no activation range; calibrate (or train) first")
        quant.enable_observer(False).enable_fake_quant(True)
    return quant


def _to_qlinear(mod: QuantLinear, mode: str) -> QLinear:
    qp = mod.weight_quant.qparams(mod.weight)
    q = QLinear(mod.in_features, mod.out_features, bias=mod.bias is not None, mode=mode, device=mod.weight.device)
    q.wq.copy_(qp.quantize(mod.weight))
    q.w_scale.copy_(qp.scale)
    if mod.bias is not None:
        q.bias.copy_(mod.bias.detach())
    return q


def _dequantized_copy(mod: nn.Module, float_type: type) -> nn.Module:
    """A float ``float_type`` layer with ``mod``'s configuration and fake-quantized weight."""
    if float_type is nn.Linear:
        new = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None,
                        device=mod.weight.device, dtype=mod.weight.dtype)
    else:
        new = nn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride, padding=mod.padding,
                        dilation=mod.dilation, groups=mod.groups, bias=mod.bias is not None,
                        padding_mode=mod.padding_mode, device=mod.weight.device, dtype=mod.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(mod.weight_quant(mod.weight))
        if mod.bias is not None:
            new.bias.copy_(mod.bias)
    return new


def _qlinear_storable(mod: QuantLinear) -> bool:
    """QLinear holds symmetric per-output-channel weights of up to 8 bits."""
    scheme = mod.weight_quant.scheme
    return scheme.symmetric and scheme.channel_axis(2) == 0


def convert(model: nn.Module, verbose: bool = True) -> nn.Module:
    """Replace every :class:`QuantLinear`/:class:`QuantConv2d` by its deployable form, in place
    (see the module docs for what runs where). Activation ranges are frozen.
    Returns ``model``."""
    report = ConversionReport("convert")
    for name, mod in list(model.named_modules()):
        if type(mod) is QuantLinear:
            inp = mod.input_quant
            bits = mod.weight_quant.scheme.num_bits
            if not _qlinear_storable(mod):
                new = QuantizedLayer(_frozen(inp, name), _dequantized_copy(mod, nn.Linear))
                detail = "input fake-quant + float linear on dequantized weights"
            elif (isinstance(inp, DynamicRowFakeQuantize) and inp.num_bits == 8
                  and mod.in_features <= _checks.INT8_MAX_K):
                new = _to_qlinear(mod, "dynamic")
                detail = f"QLinear dynamic (W8A8 int8 kernel, {bits}-bit weight grid)"
            else:
                new = QuantizedLayer(_frozen(inp, name), _to_qlinear(mod, "weight_only"))
                detail = f"input fake-quant ({_describe(inp)}) + QLinear weight_only ({bits}-bit weight grid)"
        elif type(mod) is QuantConv2d:
            new = QuantizedLayer(_frozen(mod.input_quant, name), _dequantized_copy(mod, nn.Conv2d))
            detail = f"input fake-quant + float conv on dequantized {mod.weight_quant.scheme.num_bits}-bit weights"
        else:
            continue
        new.train(mod.training)
        _set_submodule(model, name, new)
        report.converted.append((name, detail))
    if not report.converted:
        raise ValueError("convert: the model has no QuantLinear/QuantConv2d layers; call prepare_ptq or "
                         "prepare_qat first")
    _finish(report, verbose)
    return model


def convert_ptq(model: nn.Module, verbose: bool = True) -> nn.Module:
    """:func:`convert` for a calibrated :func:`prepare_ptq` model."""
    return convert(model, verbose)


def convert_qat(model: nn.Module, verbose: bool = True) -> nn.Module:
    """:func:`convert` for a trained :func:`prepare_qat` model: its outputs match the
    fake-quant model's in eval mode up to float rounding."""
    return convert(model, verbose)
