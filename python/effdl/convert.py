"""One-call model conversion: swap layers for effdl's modules, in place.

``sparsify_`` (nn.Linear -> SparseLinear), ``quantize_`` (nn.Linear ->
QLinear, SparseLinear -> SparseQLinear) and ``fuse_dwsep_`` (depthwise conv [+BN] + activation + 1x1 conv
[+BN] [+activation] -> DWSeparableConv2d). Each returns the model, leaves layers
it cannot convert untouched (a layer with hooks is left alone, except the mask
hooks of :mod:`effdl.prune`: a pruned layer converts with its zeros and loses its
mask, as :func:`effdl.prune.make_permanent` would), and prints (``verbose=True``) one line naming what
was converted and what was skipped and why; the full record is
:data:`last_report`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from effdl import _checks
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear, SparseQLinear
from effdl.nn.dwsep import bn_unfoldable, dwsep_incompatibility
from effdl.nn.qlinear import MODES
from effdl.nn.sparse_qlinear import sparse_int8_incompatibility
from effdl.prune import masks

FilterFn = Callable[[nn.Module, str], bool]


@dataclass
class ConversionReport:
    """What one conversion call did: ``converted`` and ``skipped`` as (module name, detail)."""

    action: str
    converted: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        reasons = Counter(reason for _, reason in self.skipped)
        why = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        line = f"effdl.{self.action}: converted {len(self.converted)}, skipped {len(self.skipped)}"
        return line + (f" ({why})" if why else "")

    def __str__(self) -> str:
        return self.summary()


last_report: ConversionReport | None = None


def _finish(report: ConversionReport, verbose: bool) -> None:
    global last_report
    last_report = report
    if verbose:
        print(report.summary())


def _has_hooks(mod: nn.Module) -> bool:
    return bool(mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks)


def _has_foreign_hooks(mod: nn.Module) -> bool:
    """Hooks other than effdl.prune's mask hooks, which a conversion applies and drops."""
    pre = [h for h in mod._forward_pre_hooks.values() if not masks.is_mask_hook(h)]
    return bool(mod._forward_hooks or pre or mod._backward_hooks)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _swap_linears(model, action, make, why_not, filter_fn, verbose, kinds=(nn.Linear,)) -> nn.Module:
    """Replace every module whose type is exactly one of ``kinds`` by ``make(module)``."""
    report = ConversionReport(action)
    targets = [(name, mod) for name, mod in model.named_modules() if type(mod) in kinds]
    for name, mod in targets:
        if filter_fn is not None and not filter_fn(mod, name):
            report.skipped.append((name, "excluded by filter_fn"))
            continue
        reason = "has hooks, which the new module would not carry" if _has_foreign_hooks(mod) else why_not(mod)
        if reason:
            report.skipped.append((name, reason))
            continue
        if masks.has_mask(mod):
            # a pruned layer (effdl.prune): its zeros are the weight the new module stores
            masks.make_permanent(mod)
        new = make(mod)
        new.train(mod.training)
        _set_submodule(model, name, new)
        report.converted.append((name, new.extra_repr()))
    _finish(report, verbose)
    return model


def sparse_incompatibility(lin: nn.Linear, m: int = 4) -> str | None:
    """Why :func:`sparsify_` cannot convert ``lin`` to N:M (None when it can)."""
    if lin.in_features % m:
        return f"in_features not a multiple of {m}"
    if lin.weight.dtype not in _checks.FLOATS:
        return f"dtype {lin.weight.dtype} unsupported"
    return None


def int8_incompatibility(lin: nn.Linear, mode: str = "dynamic") -> str | None:
    """Why :func:`quantize_` cannot convert ``lin`` to int8 ``mode`` (None when it can)."""
    if lin.weight.dtype not in _checks.ACT_FLOATS:
        return f"dtype {lin.weight.dtype} unsupported by the int8 kernels"
    if lin.in_features > _checks.INT8_MAX_K and mode == "dynamic":
        return "in_features above the int32-exact bound"
    return None


POLICIES = ("all", "faster_only")


def _apply_policy(model, action, policy, example_input, make, why_not, filter_fn, timer, kinds=(nn.Linear,)):
    """``policy="faster_only"``: add "not faster" to ``why_not`` for the layers whose
    converted module, micro-benchmarked on the input each layer gets from
    ``example_input``, is not faster than the dense layer (effdl.plan's measurement)."""
    if policy not in POLICIES:
        raise ValueError(f"{action}: policy must be one of {POLICIES}, got {policy!r}")
    if policy == "all":
        return why_not
    if example_input is None:
        raise ValueError(f"{action}: policy='faster_only' needs example_input (the model's input, to time each layer on)")
    from effdl.plan.faster import slower_reasons

    reasons = slower_reasons(model, example_input, make, why_not, filter_fn, timer, kinds=kinds)
    return lambda lin: why_not(lin) or reasons.get(id(lin))


def sparsify_(
    model: nn.Module, n: int = 2, m: int = 4, filter_fn: FilterFn | None = None, verbose: bool = True,
    policy: str = "all", example_input=None, timer=None,
) -> nn.Module:
    """Replace every ``nn.Linear`` by :class:`SparseLinear` (magnitude N:M pruning
    where the weight is not N:M yet). Layers with ``in_features % m != 0`` are
    skipped. ``filter_fn(module, name)`` returning False skips a layer.

    ``policy="faster_only"`` converts only the layers whose sparse module is
    measurably faster (>= 5 %) than the dense one on the input the layer gets from
    ``example_input`` (a tensor, a tuple of positional inputs or a dict of keyword
    inputs); the report gives each skipped layer's measured speedup. ``timer``
    replaces the micro-benchmark (see :func:`effdl.plan.measure.interleaved_timer`)."""

    def make(lin):
        return SparseLinear.from_dense(lin, n, m)

    why_not = _apply_policy(model, "sparsify_", policy, example_input, make,
                            lambda lin: sparse_incompatibility(lin, m), filter_fn, timer)
    return _swap_linears(model, "sparsify_", make, why_not, filter_fn, verbose)


def quantize_(
    model: nn.Module, mode: str = "dynamic", filter_fn: FilterFn | None = None, verbose: bool = True,
    policy: str = "all", example_input=None, timer=None,
) -> nn.Module:
    """Quantize every linear layer to int8 weights, per-channel symmetric, in place.

    * ``nn.Linear`` -> :class:`QLinear`;
    * :class:`SparseLinear` (from :func:`sparsify_`) -> :class:`SparseQLinear`, which keeps
      the N:M pattern and quantizes the kept weights (their scale over the kept values).
      So ``quantize_(sparsify_(model))`` gives 2:4-sparse int8 layers.

    ``mode="dynamic"``: W8A8, the input quantized per row on the fly, exact int32
    products (:func:`effdl.ops.int8_linear` / :func:`effdl.ops.nm_int8_linear`).
    ``mode="weight_only"``: int8 weights, float activations. For an N:M layer there is
    no fused weight-only kernel yet: :class:`SparseQLinear` then stores int8 N:M and
    dequantizes the kept weights on each call for :func:`effdl.ops.nm_linear` (the
    memory saving is real, the speed is that of the float N:M kernel plus the
    dequantization). ``filter_fn(module, name)`` returning False skips a layer.
    ``policy``, ``example_input`` and ``timer`` as in :func:`sparsify_` (a layer is
    compared with what it is now: an ``nn.Linear`` or a ``SparseLinear``)."""
    if mode not in MODES:
        raise ValueError(f"quantize_: mode must be one of {MODES}, got {mode!r}")

    def incompatibility(mod: nn.Module) -> str | None:
        if isinstance(mod, SparseLinear):
            return sparse_int8_incompatibility(mod, mode)
        return int8_incompatibility(mod, mode)

    def make(mod: nn.Module) -> nn.Module:
        if isinstance(mod, SparseLinear):
            return SparseQLinear.from_sparse(mod, mode)
        return QLinear.from_float(mod, mode)

    kinds = (nn.Linear, SparseLinear)
    why_not = _apply_policy(model, "quantize_", policy, example_input, make, incompatibility, filter_fn, timer, kinds)
    return _swap_linears(model, "quantize_", make, why_not, filter_fn, verbose, kinds=kinds)


# ---------------------------------------------------------------- fuse_dwsep_

_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Identity: "none"}


def _plain_sequential(mod: nn.Module) -> bool:
    """A Sequential that runs its children in order (a subclass with its own
    forward may route data any way, so it is not looked into)."""
    return isinstance(mod, nn.Sequential) and type(mod).forward is nn.Sequential.forward


def _leaves(seq: nn.Sequential, prefix: str, walked: set[str]) -> list[tuple[str, nn.Module]]:
    """The modules a plain Sequential runs, in order, descending into nested
    plain Sequentials (torchvision's Conv2dNormActivation is one); the names of
    the nested Sequentials go to ``walked``."""
    out: list[tuple[str, nn.Module]] = []
    for child_name, child in seq._modules.items():  # every occurrence: a reused module runs twice
        if child is None:
            continue
        name = f"{prefix}.{child_name}" if prefix else child_name
        if _plain_sequential(child):
            walked.add(name)
            out += _leaves(child, name, walked)
        else:
            out.append((name, child))
    return out


def _is_depthwise(mod: nn.Module) -> bool:
    return type(mod) is nn.Conv2d and mod.groups == mod.in_channels == mod.out_channels and mod.groups > 1


def _match_dwsep(leaves, i, uses):
    """Match dw conv [BN] [act] pw conv [BN] [act] at leaves[i]; returns
    (names consumed, kwargs for from_float) or (None, reason). ``uses`` counts
    how often each module occurs in the model."""
    j = i + 1
    dw = leaves[i][1]
    dw_bn = pw_bn = None
    dw_act = pw_act = "none"
    if j < len(leaves) and type(leaves[j][1]) is nn.BatchNorm2d:
        dw_bn = leaves[j][1]
        j += 1
    if j < len(leaves) and type(leaves[j][1]) in _ACTIVATIONS:
        dw_act = _ACTIVATIONS[type(leaves[j][1])]
        j += 1
    elif j < len(leaves) and not isinstance(leaves[j][1], nn.Conv2d):
        return None, f"activation {type(leaves[j][1]).__name__} after the depthwise conv is unsupported"
    if j >= len(leaves) or type(leaves[j][1]) is not nn.Conv2d:
        return None, "no 1x1 conv follows the depthwise conv"
    pw = leaves[j][1]
    reason = dwsep_incompatibility(dw, pw)
    if reason:
        return None, reason
    j += 1
    if j < len(leaves) and type(leaves[j][1]) is nn.BatchNorm2d:
        pw_bn = leaves[j][1]
        j += 1
    if j < len(leaves) and type(leaves[j][1]) in (nn.ReLU, nn.ReLU6):
        pw_act = _ACTIVATIONS[type(leaves[j][1])]
        j += 1
    for bn in (dw_bn, pw_bn):
        why = bn_unfoldable(bn) if bn is not None else None
        if why:
            return None, why
    run = [mod for _, mod in leaves[i:j]]
    if any(uses[id(mod)] > 1 for mod in run):
        return None, "a layer of the run is also used elsewhere in the model"
    if any(_has_hooks(mod) for mod in run):
        return None, "a layer of the run has hooks, which the fused module would not carry"
    names = [name for name, _ in leaves[i:j]]
    kwargs = {"dw_conv": dw, "pw_conv": pw, "dw_bn": dw_bn, "pw_bn": pw_bn, "dw_activation": dw_act,
              "pw_activation": pw_act}
    return names, kwargs


@dataclass
class DWSepRun:
    """One fusable run found by :func:`find_dwsep_runs`: the names of the modules it
    consumes (depthwise conv first) and the keyword arguments of
    :meth:`DWSeparableConv2d.from_float`."""

    names: list[str]
    kwargs: dict


def find_dwsep_runs(model: nn.Module) -> tuple[list[DWSepRun], list[tuple[str, str]]]:
    """The runs ``depthwise Conv2d [-> BatchNorm2d] [-> ReLU/ReLU6] -> 1x1 Conv2d
    [-> BatchNorm2d] [-> ReLU/ReLU6]`` inside plain ``nn.Sequential`` containers
    that :func:`fuse_dwsep_` would fuse, and the depthwise convs it would leave
    (name, reason). Changes nothing."""
    runs: list[DWSepRun] = []
    skipped: list[tuple[str, str]] = []
    uses = Counter(id(mod) for _, mod in model.named_modules(remove_duplicate=False))
    done: set[str] = set()
    for seq_name, seq in list(model.named_modules()):
        if not _plain_sequential(seq) or seq_name in done:
            continue
        leaves = _leaves(seq, seq_name, done)
        i = 0
        while i < len(leaves):
            name, mod = leaves[i]
            if not _is_depthwise(mod):
                i += 1
                continue
            names, got = _match_dwsep(leaves, i, uses)
            if names is None:
                skipped.append((name, got))
                i += 1
                continue
            runs.append(DWSepRun(names, got))
            i += len(names)
    return runs, skipped


def fuse_dwsep_run(model: nn.Module, run: DWSepRun) -> DWSeparableConv2d:
    """Replace one run found by :func:`find_dwsep_runs` by its fused module (the
    other layers of the run become ``nn.Identity``); returns the fused module."""
    fused = DWSeparableConv2d.from_float(**run.kwargs)
    fused.train(run.kwargs["dw_conv"].training)
    _set_submodule(model, run.names[0], fused)
    for other in run.names[1:]:
        _set_submodule(model, other, nn.Identity())
    return fused


def fuse_dwsep_(model: nn.Module, verbose: bool = True) -> nn.Module:
    """Replace each run ``depthwise Conv2d [-> BatchNorm2d] [-> ReLU/ReLU6] -> 1x1
    Conv2d [-> BatchNorm2d] [-> ReLU/ReLU6]`` inside ``nn.Sequential`` containers
    (as in torchvision's MobileNetV2/V3 and hand-written models) by one
    :class:`DWSeparableConv2d`. BatchNorms are folded with their running
    statistics, so fuse an eval-mode model. Layers in the run after the first
    become ``nn.Identity``.

    A run is left as it is, with the reason in the report, when a BatchNorm of
    it is in training mode or has no running statistics, when one of its layers
    is also used elsewhere in the model or carries hooks, or when its Sequential
    has a forward of its own."""
    report = ConversionReport("fuse_dwsep_")
    runs, report.skipped = find_dwsep_runs(model)
    for run in runs:
        fused = fuse_dwsep_run(model, run)
        report.converted.append((run.names[0], fused.extra_repr()))
    _finish(report, verbose)
    return model
