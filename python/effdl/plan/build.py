"""``make_plan``: measure every convertible layer of a model on its real input, then choose."""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence

import torch
from torch import nn

from effdl.plan.candidates import KINDS, Unit, find_units, module_bytes
from effdl.plan.error import sqnr_db
from effdl.plan.io import CandidateResult, LayerPlan, Plan
from effdl.plan.measure import (
    CachedOutput,
    ExampleInput,
    Timer,
    cache_bytes,
    capture_inputs,
    interleaved_timer,
    streamed_bytes,
    time_model,
    time_rest,
    weight_copies,
)
from effdl.plan.solver import DEFAULT_MARGIN, choose


def _device(model: nn.Module, example: ExampleInput) -> str:
    for t in list(example.args) + list(example.kwargs.values()):
        if isinstance(t, torch.Tensor):
            return str(t.device)
    p = next(model.parameters(), None)
    return str(p.device) if p is not None else "cpu"


def measure_unit(unit: Unit, x: torch.Tensor, calls: int, timer: Timer, copies: int = 1) -> tuple[LayerPlan, torch.Tensor]:
    """Build every candidate of ``unit``, check its output against the dense one on
    ``x`` (SQNR), and time dense and candidates together on ``x``, each rotating over
    ``copies`` copies of its weights (see :func:`weight_copies`). Returns the layer's
    record and its dense output."""
    with torch.no_grad():
        ref = unit.dense(x)
    lay = LayerPlan(unit.name, unit.type, list(unit.modules), list(x.shape), calls, 0.0, module_bytes(unit.dense))
    denses = [unit.dense] + [copy.deepcopy(unit.dense) for _ in range(copies - 1)]
    fns = {"dense": [lambda d=d: d(x) for d in denses]}
    for kind in unit.kinds:
        try:
            mods = [unit.build(kind, d).eval() for d in denses]
            with torch.no_grad():
                out = mods[0](x)
            lay.candidates[kind] = CandidateResult(sqnr_db=round(sqnr_db(out, ref), 3), bytes=module_bytes(mods[0]))
            fns[kind] = [lambda mod=mod: mod(x) for mod in mods]
        except Exception as exc:  # a candidate that cannot run here is recorded, never fatal
            lay.candidates[kind] = CandidateResult(error=f"{type(exc).__name__}: {exc}"[:300])
    with torch.no_grad():
        secs = timer(unit.name, fns)
    lay.dense_ms = secs["dense"] * 1e3
    for kind in fns:
        if kind != "dense":
            lay.candidates[kind].latency_ms = secs[kind] * 1e3
    return lay, ref


def _smallest_bytes(unit: Unit) -> int:
    """A lower bound of the smallest candidate's bytes (int8: a quarter of fp32)."""
    dense = module_bytes(unit.dense)
    return dense if unit.type == "DWSepRun" else dense // 4


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
    the dense layer (``timer``, default :func:`interleaved_timer`) — over rotated
    copies of the weights when the model's weights do not fit in the last-level cache,
    so that they come from memory as in the model — and its output
    error is the SQNR vs the dense layer's output. The rest of the model (everything
    but the measured layers, which return their recorded outputs meanwhile) is timed
    as a whole and carried into the prediction unchanged (:meth:`Plan.predicted_ms`);
    so is the whole dense model, for reference.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"make_plan: model must be an nn.Module, got {type(model).__name__}")
    example = ExampleInput.of(example_input)
    timer = timer or interleaved_timer()
    model.eval()
    units = find_units(model, kinds)
    captured = capture_inputs(model, example, {u.name: u.first for u in units})
    device = _device(model, example)
    model_bytes, cache = streamed_bytes(model), cache_bytes(device)
    layers, stand_ins = [], {}
    for i, unit in enumerate(units):
        if unit.name not in captured:
            continue  # not run by this input: nothing to measure, nothing to gain
        got = captured[unit.name]
        if progress:
            print(f"[{i + 1}/{len(units)}] {unit.name} {list(got.x.shape)}", file=sys.stderr, flush=True)
        copies = weight_copies(model_bytes, cache, _smallest_bytes(unit))
        lay, out = measure_unit(unit, got.x, got.calls, timer, copies)
        layers.append(lay)
        stand_ins[unit.name] = CachedOutput(out)
        stand_ins.update({name: nn.Identity() for name in unit.modules[1:]})
    model_s = time_model(model, example, timer)["dense"]
    try:
        rest_ms = time_rest(model, example, stand_ins, timer) * 1e3
    except Exception as exc:  # a layer whose later calls need other shapes: fall back on the difference
        rest_ms = None
        meta_rest = f"rest = model - layers ({type(exc).__name__} with the layers stubbed out: {exc})"[:300]
    else:
        meta_rest = "rest timed directly, measured layers replaced by their recorded outputs"
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "kinds": list(kinds),
            "skipped": {u.name: u.skipped for u in units if u.skipped}}
    meta["cache"] = {"model_streamed_bytes": model_bytes, "cache_bytes": cache,
                     "weights": "cold (rotated copies)" if model_bytes > cache else "warm (one copy)"}
    meta["rest"] = meta_rest
    plan = Plan(layers, model_s * 1e3, example.shapes(), device, rest_ms=rest_ms, meta=meta)
    return choose(plan, target, max_error_db, margin)
