"""Parameter and FLOP counters that understand effdl's compressed modules.

FLOPs here are those of the convolutions and linear layers (they dominate every
model this library targets): one multiply-accumulate counts as 2 FLOPs, biases,
normalisation, activations and pooling are not counted. For compressed modules
the count is what their kernel executes: ``SparseLinear`` multiplies only the
kept ``n/m`` of its weights, ``DWSeparableConv2d`` is its depthwise plus its
pointwise convolution, ``QLinear`` does as many (integer) MACs as the dense layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _weight_tensors(mod: nn.Module) -> list[torch.Tensor]:
    """The tensors that hold a layer's weights, parameters or (for int8) buffers."""
    if isinstance(mod, QLinear):
        return [mod.wq] + ([mod.bias] if mod.bias is not None else [])
    return list(mod.parameters(recurse=False))


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    """Number of weights in ``model``: its parameters plus the int8 weights of
    ``QLinear`` (stored as buffers). A ``SparseLinear`` counts its kept values.

    Args:
        nonzero: count only nonzero entries (the size unstructured pruning leaves).
    """
    seen: set[int] = set()
    total = 0
    for mod in model.modules():
        for t in _weight_tensors(mod):
            if id(t) in seen:  # shared (tied) weights count once
                continue
            seen.add(id(t))
            total += int(torch.count_nonzero(t)) if nonzero else t.numel()
    return total


def _layer_macs(mod: nn.Module, out: torch.Tensor, nonzero: bool) -> int | None:
    """Multiply-accumulates of one call of ``mod`` that produced ``out`` (None: not counted)."""
    if isinstance(mod, _CONVS):
        w = mod.weight
        kept = int(torch.count_nonzero(w)) if nonzero else w.numel()
        # each output position of a batch element applies every filter once (unbatched input: no batch dim)
        batched = out.dim() == w.dim()
        positions = out.shape[0] * out[0, 0].numel() if batched else out[0].numel()
        return positions * kept
    if isinstance(mod, nn.Linear):
        w = mod.weight
        kept = int(torch.count_nonzero(w)) if nonzero else w.numel()
        return (out.numel() // max(out.shape[-1], 1)) * kept
    if isinstance(mod, SparseLinear):
        kept = int(torch.count_nonzero(mod.values)) if nonzero else mod.values.numel()
        return (out.numel() // max(out.shape[-1], 1)) * kept
    if isinstance(mod, QLinear):
        kept = int(torch.count_nonzero(mod.wq)) if nonzero else mod.wq.numel()
        return (out.numel() // max(out.shape[-1], 1)) * kept
    if isinstance(mod, DWSeparableConv2d):
        dw, pw = mod.dw_weight, mod.pw_weight
        dw_kept = int(torch.count_nonzero(dw)) if nonzero else dw.numel()
        pw_kept = int(torch.count_nonzero(pw)) if nonzero else pw.numel()
        pixels = out.shape[0] * out.shape[2] * out.shape[3]  # the depthwise output has the same grid
        return pixels * (dw_kept + pw_kept)
    return None


def count_flops(
    model: nn.Module,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    nonzero: bool = False,
    per_layer: bool = False,
) -> int | dict[str, int]:
    """FLOPs (2 per multiply-accumulate) of one forward pass on ``example_input``.

    Counts every conv/linear call (a layer called twice counts twice), including
    effdl's ``SparseLinear``, ``QLinear`` and ``DWSeparableConv2d``. The model
    runs once, in eval mode, under ``torch.no_grad``; its mode is restored.

    Args:
        example_input: a tensor or a tuple of positional inputs, batch included.
        nonzero: count only multiplications by nonzero weights (the ideal
            speedup of unstructured sparsity).
        per_layer: return ``{module name: FLOPs}`` instead of the total.
    """
    counts: dict[str, int] = {}
    handles = []

    def hook(name):
        def record(mod, args, out):
            macs = _layer_macs(mod, out, nonzero)
            if macs is not None:
                counts[name] = counts.get(name, 0) + 2 * macs
        return record

    for name, mod in model.named_modules():
        if isinstance(mod, (*_CONVS, nn.Linear, SparseLinear, QLinear, DWSeparableConv2d)):
            handles.append(mod.register_forward_hook(hook(name)))
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts if per_layer else sum(counts.values())
