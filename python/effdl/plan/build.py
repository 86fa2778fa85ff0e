"""``make_plan``: measure every convertible layer of a model on its real input, then choose."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import nn

from effdl.plan.candidates import KINDS, Unit, find_units, module_bytes
from effdl.plan.error import sqnr_db
from effdl.plan.io import CandidateResult, LayerPlan, Plan
from effdl.plan.measure import ExampleInput, Timer, capture_inputs, interleaved_timer, time_model
from effdl.plan.solver import DEFAULT_MARGIN, choose


def _device(model: nn.Module, example: ExampleInput) -> str:
    for t in list(example.args) + list(example.kwargs.values()):
        if isinstance(t, torch.Tensor):
            return str(t.device)
    p = next(model.parameters(), None)
    return str(p.device) if p is not None else "cpu"


def measure_unit(unit: Unit, x: torch.Tensor, calls: int, timer: Timer) -> LayerPlan:
    """Build every candidate of ``unit``, check its output against the dense one on
    ``x`` (SQNR), and time dense and candidates together."""
    with torch.no_grad():
        ref = unit.dense(x)
    lay = LayerPlan(unit.name, unit.type, list(unit.modules), list(x.shape), calls, 0.0, module_bytes(unit.dense))
    fns = {"dense": lambda: unit.dense(x)}
    for kind in unit.kinds:
        try:
            mod = unit.build(kind).eval()
            with torch.no_grad():
                out = mod(x)
            lay.candidates[kind] = CandidateResult(sqnr_db=round(sqnr_db(out, ref), 3), bytes=module_bytes(mod))
            fns[kind] = lambda mod=mod: mod(x)
        except Exception as exc:  # a candidate that cannot run here is recorded, never fatal
            lay.candidates[kind] = CandidateResult(error=f"{type(exc).__name__}: {exc}"[:300])
    with torch.no_grad():
        secs = timer(unit.name, fns)
    lay.dense_ms = secs["dense"] * 1e3
    for kind in fns:
        if kind != "dense":
            lay.candidates[kind].latency_ms = secs[kind] * 1e3
    return lay


def make_plan(
    model: nn.Module,
    example_input,
    target: str = "latency",
    max_error_db: float | None = None,
    margin: float = DEFAULT_MARGIN,
    kinds: Sequence[str] = KINDS,
    timer: Timer | None = None,
    progress: bool = False,
) -> Plan:
    """Measure each convertible layer of ``model`` and choose per layer (:func:`choose`).

    ``model`` is put in eval mode (BatchNorm folding needs it) and not modified.
    ``example_input``: a tensor, a tuple of positional inputs or a dict of keyword
    inputs, on the device to plan for. Each layer's input is captured from one
    forward on it; each candidate's latency is timed on that input, interleaved with
    the dense layer (``timer``, default :func:`interleaved_timer`), and its output
    error is the SQNR vs the dense layer's output. The whole model's dense forward
    is timed too: the part of it outside the measured layers is carried into the
    prediction unchanged (:meth:`Plan.predicted_ms`).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"make_plan: model must be an nn.Module, got {type(model).__name__}")
    example = ExampleInput.of(example_input)
    timer = timer or interleaved_timer()
    model.eval()
    units = find_units(model, kinds)
    captured = capture_inputs(model, example, {u.name: u.first for u in units})
    layers = []
    for i, unit in enumerate(units):
        if unit.name not in captured:
            continue  # not run by this input: nothing to measure, nothing to gain
        got = captured[unit.name]
        if progress:
            print(f"[{i + 1}/{len(units)}] {unit.name} {list(got.x.shape)}", file=sys.stderr, flush=True)
        layers.append(measure_unit(unit, got.x, got.calls, timer))
    model_s = time_model(model, example, timer)["dense"]
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "kinds": list(kinds),
            "skipped": {u.name: u.skipped for u in units if u.skipped}}
    plan = Plan(layers, model_s * 1e3, example.shapes(), _device(model, example), meta=meta)
    return choose(plan, target, max_error_db, margin)
