"""Structured channel pruning: remove whole filters and physically shrink the model.

:func:`channel_prune` returns a *new*, smaller ``nn.Module`` of the same class:
conv/linear layers with fewer output channels, their BatchNorms and depthwise
convs with fewer channels, and every consumer with fewer input channels. Which
channels must go together (residual adds, concatenations, depthwise convs,
flatten → linear) comes from :mod:`effdl.prune.trace`.

How much is removed: channels are grouped into *pruning groups* (the layers whose
output channels are tied, e.g. every conv feeding one residual stream). In each
group of ``U`` channels, ``floor(ratio * U)`` of the least important channels are
removed, the kept count rounded up to a multiple of ``round_to`` (and never
above ``U``), and every layer keeps at least one of its own channels.

Importance of a channel is that of its filter in each layer of the group (the
conv/linear output row and the depthwise filter), each layer's scores divided by
their mean so that no layer dominates by its scale, summed over the group:

* ``"l1"`` / ``"l2"``: L1 / L2 norm of the filter;
* ``"taylor"``: ``|w · ∂L/∂w|`` summed over the filter, from
  :func:`effdl.prune.importance.importance` over 8 batches of ``data``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from effdl.models import count_flops, count_params
from effdl.prune.trace import _BATCHNORMS, _CONVS, ChannelDeps, TensorInfo, trace_channels

CRITERIA = ("l1", "l2", "taylor")


@dataclass
class LayerChannels:
    """Channels of one conv / linear / BatchNorm layer before and after pruning.

    ``kept`` are the indices (into the original output channels / features) that remain.
    """

    in_before: int
    in_after: int
    out_before: int
    out_after: int
    kept: list[int]


@dataclass
class ChannelPruneReport:
    """What :func:`channel_prune` did; ``print(report)`` gives a table."""

    ratio: float
    criterion: str
    tracer: str  # "fx" or "dynamic"
    layers: dict[str, LayerChannels] = field(default_factory=dict)
    unpruned: dict[str, str] = field(default_factory=dict)  # layer name -> why its outputs were kept
    params_before: int = 0
    params_after: int = 0
    flops_before: int = 0
    flops_after: int = 0

    def __str__(self) -> str:
        lines = [f"channel pruning: ratio {self.ratio}, criterion {self.criterion}, traced with {self.tracer}",
                 f"{'layer':40s} {'in':>11s} {'out':>11s}"]
        for name, c in self.layers.items():
            lines.append(f"{name:40s} {c.in_before:>5d}→{c.in_after:<5d} "
                         f"{c.out_before:>5d}→{c.out_after:<5d}")
        lines.append(f"params {self.params_before} → {self.params_after} "
                     f"({self.params_after / max(self.params_before, 1):.1%}), "
                     f"FLOPs {self.flops_before} → {self.flops_after} "
                     f"({self.flops_after / max(self.flops_before, 1):.1%})")
        lines += [f"unpruned {name}: {why}" for name, why in self.unpruned.items()]
        return "\n".join(lines)


@dataclass
class ChannelGroup:
    """Layers whose output channels are pruned together.

    ``layers`` maps each conv/linear (and depthwise conv) of the group to the unit index
    (``0 .. units-1``) of each of its channels: channels with the same unit are one channel
    of the group and are kept or removed together. ``pinned`` says why the group is not
    pruned at all (None: it is prunable).
    """

    layers: dict[str, list[int]]
    units: int
    pinned: str | None


def _groups(deps: ChannelDeps) -> list[ChannelGroup]:
    """Split the traced layers into pruning groups: layers (conv/linear outputs, BatchNorms,
    depthwise convs) are in one group when they carry a common channel."""
    layer_syms = {**deps.sources, **deps.sliced}
    owner: dict[int, str] = {}  # channel root -> first layer seen with it
    parent = {name: name for name in layer_syms}

    def find(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for name, syms in layer_syms.items():
        for s in syms:
            root = deps.find(s)
            if root in owner:
                parent[find(name)] = find(owner[root])
            else:
                owner[root] = name
    members: dict[str, list[str]] = {}
    for name in layer_syms:
        members.setdefault(find(name), []).append(name)
    groups = []
    for names in members.values():
        if not any(n in deps.sources for n in names):
            continue  # BatchNorms / depthwise convs of channels no layer here produces (e.g. the input's)
        unit_of: dict[int, int] = {}
        for n in names:
            for s in layer_syms[n]:
                unit_of.setdefault(deps.find(s), len(unit_of))
        pinned = next((deps.pinned[r] for r in unit_of if r in deps.pinned), None)
        layers = {n: [unit_of[deps.find(s)] for s in layer_syms[n]] for n in names}
        groups.append(ChannelGroup(layers=layers, units=len(unit_of), pinned=pinned))
    return groups


def _as_inputs(example_input) -> tuple:
    return (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)


def channel_groups(
    model: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor], tracer: str = "auto"
) -> list[ChannelGroup]:
    """The pruning groups of ``model`` as :func:`channel_prune` sees them (the model is not changed)."""
    work = copy.deepcopy(model).eval()
    with torch.no_grad():
        return _groups(trace_channels(work, _as_inputs(example_input), tracer))


def _filter_scores(model: nn.Module, names: Iterable[str], criterion: str, taylor: dict | None) -> dict:
    """Per-output-channel importance ``[C]`` of each named conv/linear layer."""
    scores = {}
    for name in names:
        w = model.get_submodule(name).weight.detach()
        if criterion == "taylor":
            key = f"{name}.weight"
            if key not in taylor:
                raise RuntimeError(f"importance() returned no Taylor scores for {key!r}")
            t = taylor[key].detach().abs()
            if t.shape != w.shape:
                raise RuntimeError(f"Taylor scores for {key!r} have shape {tuple(t.shape)}, "
                                   f"expected the weight's {tuple(w.shape)}")
            scores[name] = t.flatten(1).sum(1).double().cpu()
        elif criterion == "l1":
            scores[name] = w.abs().flatten(1).sum(1).double().cpu()
        else:
            scores[name] = w.double().pow(2).flatten(1).sum(1).sqrt().cpu()
    return scores


def _select(group: ChannelGroup, scores: dict, ratio: float, round_to: int) -> set[int]:
    """The units of ``group`` to remove."""
    total = torch.zeros(group.units, dtype=torch.float64)
    for name, units in group.layers.items():
        if name not in scores:  # BatchNorms carry channels but have no filters to rank
            continue
        s = scores[name]
        mean = float(s.mean())
        total.index_add_(0, torch.tensor(units), s / mean if mean > 0 else s)
    keep = group.units - math.floor(ratio * group.units)
    keep = min(group.units, math.ceil(keep / round_to) * round_to)
    order = sorted(range(group.units), key=lambda u: (float(total[u]), u))
    removed = set(order[: group.units - keep])
    for units in group.layers.values():  # every layer keeps at least one of its channels
        if all(u in removed for u in units):
            removed.discard(max(units, key=lambda u: (float(total[u]), u)))
    return removed


def _replace(mod: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(mod, name)
    if old is None:
        return
    if isinstance(old, nn.Parameter):
        setattr(mod, name, nn.Parameter(value.clone(), requires_grad=old.requires_grad))
    else:
        setattr(mod, name, value.clone())


def _shrink(mod: nn.Module, keep_out: list[int] | None, keep_in: list[int] | None, dw: bool = False) -> None:
    """Keep only the given output / input channels of one conv, linear or BatchNorm layer."""
    if isinstance(mod, _BATCHNORMS):
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(mod, attr, None) is not None:
                _replace(mod, attr, getattr(mod, attr)[keep_out])
        mod.num_features = len(keep_out)
        return
    w = mod.weight.detach()
    if keep_out is not None:
        w = w[keep_out]
        if mod.bias is not None:
            _replace(mod, "bias", mod.bias.detach()[keep_out])
    if keep_in is not None:
        w = w[:, keep_in]
    _replace(mod, "weight", w)
    if isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = w.shape[0], w.shape[1]
    elif dw:
        mod.in_channels = mod.out_channels = mod.groups = w.shape[0]
    else:
        mod.out_channels, mod.in_channels = w.shape[0], w.shape[1]


def _channels(mod: nn.Module) -> tuple[int, int]:
    if isinstance(mod, nn.Linear):
        return mod.in_features, mod.out_features
    if isinstance(mod, _BATCHNORMS):
        return mod.num_features, mod.num_features
    return mod.in_channels, mod.out_channels


def _output_shapes(out) -> list:
    leaves, spec = tree_flatten(out)
    return [str(spec)] + [tuple(v.shape) if isinstance(v, (torch.Tensor, TensorInfo)) else v for v in leaves]


def _flops_and_output(model: nn.Module, inputs: tuple) -> tuple[int, object]:
    """FLOPs of one forward pass and its output (one pass for both)."""
    outputs = []
    handle = model.register_forward_hook(lambda mod, args, out: outputs.append(out))
    try:
        flops = count_flops(model, inputs)
    finally:
        handle.remove()
    return flops, outputs[0]


def channel_prune(
    model: nn.Module,
    ratio: float,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    criterion: str = "l1",
    loss_fn: Callable | None = None,
    data: Iterable | None = None,
    exclude: Iterable[str] | None = None,
    round_to: int = 1,
    tracer: str = "auto",
) -> nn.Module:
    """Remove the least important ``ratio`` of the channels of every prunable layer group.

    Args:
        model: any ``nn.Module`` with conv / linear layers (not modified).
        ratio: fraction of channels to remove in each group, in ``[0, 1)``; the removed count
            is rounded down, so a ratio that rounds to zero channels changes nothing.
        example_input: a tensor or a tuple of positional inputs (batch included), used to
            trace the model and to check the pruned one.
        criterion: ``"l1"``, ``"l2"`` (filter norms) or ``"taylor"`` (needs ``loss_fn`` and
            ``data``, passed on to :func:`effdl.prune.importance.importance`).
        exclude: names of conv / linear modules whose output channels must all be kept.
        round_to: round the kept channel count of each group up to a multiple of this
            (e.g. 8 for vectorised kernels).
        tracer: ``"auto"`` (``torch.fx`` where it can trace the model, else a recording of one
            forward pass), ``"fx"`` or ``"dynamic"``.

    Returns:
        A new model of the same class with fewer parameters and FLOPs and the same output
        shape, in the same train/eval mode as ``model``. Its ``prune_report`` attribute is a
        :class:`ChannelPruneReport`: channels before/after per layer, params and FLOPs before/after,
        and the layers left unpruned with the reason (outputs of the model, channels consumed
        by an op the tracer cannot follow, shared modules, grouped convolutions, excluded).

    Raises:
        ValueError: ``ratio`` outside ``[0, 1)``, unknown ``criterion``, Taylor without
            ``loss_fn``/``data``, a model without conv/linear layers, a non-finite weight,
            an ``exclude`` name that is not a conv/linear module.
        RuntimeError: the pruned model does not run on ``example_input`` or changes its output
            shape (e.g. a channel count hard-coded in ``forward``; exclude that layer).
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"ratio must be a number in [0, 1), got {ratio!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if criterion == "taylor" and (loss_fn is None or data is None):
        raise ValueError("criterion='taylor' needs loss_fn and data to compute gradients")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be a positive int, got {round_to!r}")
    layer_names = {n for n, m in model.named_modules() if isinstance(m, (*_CONVS, nn.Linear))}
    if not layer_names:
        raise ValueError("model has no Conv1d/2d/3d or Linear layer to prune")
    exclude = [exclude] if isinstance(exclude, str) else list(exclude or ())
    for name in exclude:
        if name not in layer_names:
            raise ValueError(f"exclude: {name!r} is not the name of a conv or linear module of the model")
    for name, p in (*model.named_parameters(), *model.named_buffers()):
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise ValueError(f"model has NaN or infinite values in {name!r}; cannot rank its channels")
    inputs = _as_inputs(example_input)

    work = copy.deepcopy(model)
    modes = {name: m.training for name, m in work.named_modules()}
    work.eval()
    with torch.no_grad():
        deps = trace_channels(work, inputs, tracer)
        flops_before, params_before = count_flops(work, inputs), count_params(work)
    for name in exclude:
        if name in deps.sources:
            deps.pin(deps.sources[name], "excluded by the caller")

    taylor = None
    if criterion == "taylor":
        from effdl.prune.importance import importance  # the gradient-based scores live there

        taylor = importance(copy.deepcopy(model), criterion="taylor", loss_fn=loss_fn, data=data, batches=8)
    groups = _groups(deps)
    scored = [n for g in groups if g.pinned is None for n in g.layers
              if isinstance(work.get_submodule(n), (*_CONVS, nn.Linear))]
    scores = _filter_scores(work, scored, criterion, taylor)

    keep: dict[str, list[int] | None] = {}  # per source / sliced layer: kept output channels
    removed_roots: set[int] = set()
    unpruned: dict[str, str] = {}
    for g in groups:
        if g.pinned is not None:
            unpruned.update({n: g.pinned for n in g.layers if n in deps.sources})
            continue
        removed = _select(g, scores, ratio, round_to)
        if not removed:
            unpruned.update({n: f"ratio {ratio} removes no channel of the {g.units} in its group"
                             for n in g.layers if n in deps.sources})
            continue
        for name, units in g.layers.items():
            keep[name] = [i for i, u in enumerate(units) if u not in removed]
            syms = deps.sources.get(name) or deps.sliced[name]
            removed_roots.update(deps.find(s) for s, u in zip(syms, units, strict=True) if u in removed)
    for name, reason in deps.blocked.items():
        unpruned.setdefault(name, reason)

    report = ChannelPruneReport(ratio=ratio, criterion=criterion, tracer=deps.tracer)
    layer_types = (*_CONVS, nn.Linear, *_BATCHNORMS)
    before = {n: _channels(m) for n, m in work.named_modules() if isinstance(m, layer_types)}
    for name, mod in work.named_modules():
        keep_in = None
        if name in deps.consumers:
            syms = deps.consumers[name]
            keep_in = [i for i, s in enumerate(syms) if deps.find(s) not in removed_roots]
            keep_in = None if len(keep_in) == len(syms) else keep_in
        keep_out = keep.get(name)
        if keep_out is not None or keep_in is not None:
            _shrink(mod, keep_out, keep_in, dw=name in deps.sliced)
        if name in before:
            n_in, n_out = _channels(mod)
            kept = keep_out if keep_out is not None else list(range(before[name][1]))
            report.layers[name] = LayerChannels(before[name][0], n_in, before[name][1], n_out, kept)

    try:
        report.flops_after, out = _flops_and_output(work, inputs)
    except Exception as err:
        raise RuntimeError("the pruned model no longer runs on example_input (its forward may hard-code a "
                           "channel count); exclude the layers involved") from err
    reference, pruned_shapes = _output_shapes(deps.output), _output_shapes(out)
    if pruned_shapes != reference:
        raise RuntimeError(f"channel pruning changed the output shapes {reference} to {pruned_shapes}")
    report.params_after = count_params(work)
    report.flops_before, report.params_before = flops_before, params_before
    report.unpruned = dict(sorted(unpruned.items()))
    for name, m in work.named_modules():
        m.train(modes[name])
    work.prune_report = report
    return work
