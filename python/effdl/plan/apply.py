"""``apply_plan``: convert exactly the layers a plan chose, to exactly the chosen kind."""

from __future__ import annotations

import os

from torch import nn

from effdl.convert import ConversionReport, _finish
from effdl.plan.candidates import find_units
from effdl.plan.io import Plan, load_plan


def apply_plan(model: nn.Module, plan: Plan | dict | str | os.PathLike, verbose: bool = True) -> nn.Module:
    """Convert ``model`` in place as ``plan`` says (a :class:`Plan`, its dict, or a
    plan JSON path, possibly edited by hand) and return it.

    Every layer with a non-null ``choice`` must exist in ``model`` with the plan's type
    and modules, and the choice must be applicable to it: otherwise ``ValueError``
    before anything is changed. Layers with ``choice: null`` and layers the plan does
    not list stay as they are. The record goes to ``effdl.convert.last_report``.
    """
    plan = load_plan(plan)
    if not isinstance(model, nn.Module):
        raise ValueError(f"apply_plan: model must be an nn.Module, got {type(model).__name__}")
    if any(lay.type == "DWSepRun" and lay.choice for lay in plan.layers):
        model.eval()  # the fused module folds BatchNorms with their running statistics
    units = {u.name: u for u in find_units(model)}
    todo = []
    for lay in plan.layers:
        if lay.choice is None:
            continue
        unit = units.get(lay.name)
        if unit is None or unit.type != lay.type or unit.modules != lay.modules:
            found = "no convertible layer" if unit is None else f"a {unit.type} over {unit.modules}"
            raise ValueError(f"apply_plan: the plan's layer {lay.name!r} ({lay.type} over {lay.modules}) "
                             f"does not match the model, which has {found} there")
        if lay.choice not in unit.kinds:
            why = unit.skipped.get(lay.choice, f"applicable: {unit.kinds}")
            raise ValueError(f"apply_plan: layer {lay.name!r} cannot become {lay.choice!r} ({why})")
        todo.append((unit, lay.choice))
    report = ConversionReport("apply_plan")
    for unit, kind in todo:
        new = unit.replace(model, kind)
        report.converted.append((unit.name, f"{kind}: {new.extra_repr()}"))
    report.skipped = [(lay.name, lay.reason or "kept dense") for lay in plan.layers if lay.choice is None]
    _finish(report, verbose)
    return model
