"""What the planner can do to each layer: the candidate conversions and how to build them.

A *unit* is what one plan entry converts: an ``nn.Linear``, or a depthwise conv ->
[BN] -> [act] -> 1x1 conv -> [BN] -> [act] run that ``effdl.fuse_dwsep_`` would fuse
(found by the same matcher, :func:`effdl.convert.find_dwsep_runs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

import effdl.nn as enn
from effdl.convert import (
    DWSepRun,
    _has_hooks,
    _set_submodule,
    find_dwsep_runs,
    fuse_dwsep_run,
    int8_incompatibility,
    sparse_incompatibility,
)

LINEAR_KINDS = ("sparse_2_4", "int8_dynamic", "int8_weight_only", "sparse_int8")
DWSEP_KINDS = ("dwsep",)
KINDS = LINEAR_KINDS + DWSEP_KINDS


def _make_sparse_int8(lin: nn.Linear) -> nn.Module:
    return enn.SparseQLinear.from_float(lin, 2, 4, "dynamic")


LINEAR_BUILDERS: dict[str, Callable[[nn.Linear], nn.Module]] = {
    "sparse_2_4": lambda lin: enn.SparseLinear.from_dense(lin, 2, 4),
    "int8_dynamic": lambda lin: enn.QLinear.from_float(lin, "dynamic"),
    "int8_weight_only": lambda lin: enn.QLinear.from_float(lin, "weight_only"),
    "sparse_int8": _make_sparse_int8,
}


def linear_incompatibility(lin: nn.Linear, kind: str) -> str | None:
    """Why ``kind`` cannot convert ``lin`` (None when it can)."""
    if kind == "sparse_2_4":
        return sparse_incompatibility(lin, 4)
    if kind == "int8_dynamic":
        return int8_incompatibility(lin, "dynamic")
    if kind == "int8_weight_only":
        return int8_incompatibility(lin, "weight_only")
    if kind == "sparse_int8":
        return sparse_incompatibility(lin, 4) or int8_incompatibility(lin, "dynamic")
    raise ValueError(f"unknown linear candidate kind {kind!r}; expected one of {LINEAR_KINDS}")


@dataclass
class Unit:
    """One convertible layer of a model.

    ``name`` is the first module's qualified name (the plan's key), ``modules`` every
    module the conversion replaces, ``dense`` a module computing the unit's dense
    function on the first module's input, ``kinds`` the applicable candidate kinds and
    ``skipped`` the inapplicable ones with the reason.
    """

    name: str
    type: str  # "Linear" or "DWSepRun"
    modules: list[str]
    first: nn.Module
    dense: nn.Module
    kinds: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    run: DWSepRun | None = None

    def build(self, kind: str, dense: nn.Module | None = None) -> nn.Module:
        """A new converted module for ``kind`` (the model is not touched), made from
        ``dense`` — a copy of :attr:`dense` — or from the model's own layers."""
        if kind not in self.kinds:
            raise ValueError(f"layer {self.name!r}: candidate {kind!r} is not applicable here "
                             f"({self.skipped.get(kind, f'applicable: {self.kinds}')})")
        dense = self.dense if dense is None else dense
        if self.type == "Linear":
            return LINEAR_BUILDERS[kind](dense)
        # the run's modules in order are dense[0], dense[1], ...: map the matcher's kwargs onto them
        index = {id(m): i for i, m in enumerate(self.dense)}
        kwargs = {k: dense[index[id(v)]] if isinstance(v, nn.Module) else v for k, v in self.run.kwargs.items()}
        return enn.DWSeparableConv2d.from_float(**kwargs)

    def replace(self, model: nn.Module, kind: str) -> nn.Module:
        """Convert the unit inside ``model`` to ``kind``; returns the new module."""
        if self.type == "Linear":
            new = self.build(kind)
            new.train(self.first.training)
            _set_submodule(model, self.name, new)
            return new
        self.build(kind)  # validates the kind
        return fuse_dwsep_run(model, self.run)


def find_units(model: nn.Module, kinds: tuple[str, ...] | list[str] = KINDS) -> list[Unit]:
    """Every ``nn.Linear`` and every fusable depthwise-separable run of ``model`` (in
    module order), each with its applicable candidates among ``kinds``."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown candidate kind(s) {bad}; expected a subset of {KINDS}")
    units: list[Unit] = []
    if any(k in LINEAR_KINDS for k in kinds):
        for name, mod in model.named_modules():
            if type(mod) is not nn.Linear:
                continue
            unit = Unit(name, "Linear", [name], mod, mod)
            for kind in (k for k in kinds if k in LINEAR_KINDS):
                why = "has hooks, which the new module would not carry" if _has_hooks(mod) else None
                why = why or linear_incompatibility(mod, kind)
                if why:
                    unit.skipped[kind] = why
                else:
                    unit.kinds.append(kind)
            units.append(unit)
    if "dwsep" in kinds:
        runs, _ = find_dwsep_runs(model)
        for run in runs:
            mods = [model.get_submodule(n) for n in run.names]
            units.append(Unit(run.names[0], "DWSepRun", list(run.names), mods[0], nn.Sequential(*mods),
                              kinds=["dwsep"], run=run))
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    units.sort(key=lambda u: order[u.name])
    return units


def module_bytes(mod: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (what its state_dict stores)."""
    seen, total = set(), 0
    for t in list(mod.parameters()) + list(mod.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total
