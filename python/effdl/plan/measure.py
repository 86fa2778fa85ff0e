"""Measuring layers where they run: each layer's real input, captured on the example
input, and an interleaved micro-benchmark of the dense layer against its candidates."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from effdl.plan.timing import Budget, Candidate, time_interleaved

# A timer gets a label (the layer's name, or "<model>") and named zero-argument calls,
# and returns the seconds per call of each. Tests inject a deterministic one.
Timer = Callable[[str, Mapping[str, Callable[[], object]]], dict[str, float]]

# Short per-layer budget: a model has tens of layers, and interleaving keeps the ratios fair.
LAYER_BUDGET = Budget(seconds=0.3, min_reps=7, max_case_s=5.0, max_reps=40, sample_s=0.002, warmup_s=0.05)


def interleaved_timer(budget: Budget | None = None) -> Timer:
    """The default timer: :func:`effdl.plan.timing.time_interleaved` (medians of
    interleaved samples), synchronizing after each call on a CUDA device."""
    budget = budget or LAYER_BUDGET

    def timer(label: str, calls: Mapping[str, Callable[[], object]]) -> dict[str, float]:
        sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else None

        def synced(fn):
            return fn if sync is None else (lambda: (fn(), sync()))

        cands = [Candidate(name, [synced(fn)]) for name, fn in calls.items()]
        with torch.inference_mode():
            timings = time_interleaved(cands, budget)
        out = {}
        for t in timings:
            if t.error is not None or t.median_s is None:
                raise RuntimeError(f"timing {label}/{t.name} failed: {t.error}")
            out[t.name] = t.median_s
        return out

    return timer


@dataclass
class ExampleInput:
    """A model's example input: positional ``args`` and keyword ``kwargs``."""

    args: tuple
    kwargs: dict

    @classmethod
    def of(cls, example_input) -> ExampleInput:
        """From a tensor, a tuple/list of positional inputs, or a dict of keyword inputs."""
        if isinstance(example_input, ExampleInput):
            return example_input
        if isinstance(example_input, torch.Tensor):
            return cls((example_input,), {})
        if isinstance(example_input, (tuple, list)):
            return cls(tuple(example_input), {})
        if isinstance(example_input, Mapping):
            return cls((), dict(example_input))
        raise ValueError(
            "example_input must be a tensor, a tuple/list of positional inputs or a dict of keyword inputs, "
            f"got {type(example_input).__name__}"
        )

    def run(self, model: nn.Module):
        return model(*self.args, **self.kwargs)

    def shapes(self) -> list:
        items = list(self.args) + list(self.kwargs.values())
        return [list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in items]


@dataclass
class Captured:
    """The first input a module got during the example forward, and how often it ran."""

    x: torch.Tensor
    calls: int


def capture_inputs(model: nn.Module, example: ExampleInput, modules: Mapping[str, nn.Module]) -> dict[str, Captured]:
    """Run ``model`` once on ``example`` (no grad) and record the first positional input of
    each module in ``modules`` (name -> module). Modules that did not run are absent."""
    got: dict[str, Captured] = {}
    handles = []

    def hook(name):
        def pre(_mod, args):
            if name in got:
                got[name].calls += 1
            elif args and isinstance(args[0], torch.Tensor):
                got[name] = Captured(args[0].detach().clone(), 1)

        return pre

    try:
        for name, mod in modules.items():
            handles.append(mod.register_forward_pre_hook(hook(name)))
        with torch.no_grad():
            example.run(model)
    finally:
        for h in handles:
            h.remove()
    return got


def time_model(model: nn.Module, example: ExampleInput, timer: Timer, variants: Sequence[tuple[str, nn.Module]] = ()):
    """Seconds per forward of ``model`` (key ``"dense"``) and of each (name, model) in
    ``variants``, timed together by ``timer``."""
    calls = {"dense": lambda: example.run(model)}
    for name, other in variants:
        calls[name] = lambda other=other: example.run(other)
    with torch.no_grad():
        return timer("<model>", calls)
