"""Measuring layers where they run: each layer's real input, captured on the example
input, and an interleaved micro-benchmark of the dense layer against its candidates."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from effdl.plan.timing import Budget, Candidate, MiB, llc_bytes, rotation_sets, time_interleaved

# A timer gets a label (the layer's name, or "<model>") and, per name, a list of
# zero-argument calls doing the same work on different weight copies (run in rotation,
# so that weights come from memory, not cache, where the model does not fit in cache);
# it returns the seconds per call of each name. Tests inject a deterministic one.
Timer = Callable[[str, Mapping[str, Sequence[Callable[[], object]]]], dict[str, float]]

# Short per-layer budget: a model has tens of layers, and interleaving keeps the ratios fair.
LAYER_BUDGET = Budget(seconds=0.3, min_reps=7, max_case_s=5.0, max_reps=40, sample_s=0.002, warmup_s=0.05)
# The whole model is timed once per plan and carries the "rest" of the prediction: more samples.
MODEL_BUDGET = Budget(seconds=2.0, min_reps=11, max_case_s=20.0, max_reps=200, sample_s=0.0, warmup_s=0.2)
MODEL_LABEL = "<model>"
REST_LABEL = "<rest>"  # the model with its measured layers stubbed out


def interleaved_timer(budget: Budget | None = None, model_budget: Budget | None = None) -> Timer:
    """The default timer: :func:`effdl.plan.timing.time_interleaved` (medians of
    interleaved samples), synchronizing after each call on a CUDA device. Layers get
    ``budget`` (default :data:`LAYER_BUDGET`), whole models ``model_budget``
    (default :data:`MODEL_BUDGET`)."""
    layer_budget, model_budget = budget or LAYER_BUDGET, model_budget or MODEL_BUDGET

    def timer(label: str, calls: Mapping[str, Sequence[Callable[[], object]]]) -> dict[str, float]:
        budget = model_budget if label in (MODEL_LABEL, REST_LABEL) else layer_budget
        sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else None

        def synced(fn):
            return fn if sync is None else (lambda: (fn(), sync()))

        cands = [Candidate(name, [synced(fn) for fn in fns]) for name, fns in calls.items()]
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
    calls = {"dense": [lambda: example.run(model)]}
    for name, other in variants:
        calls[name] = [lambda other=other: example.run(other)]
    with torch.no_grad():
        return timer(MODEL_LABEL, calls)


def cache_bytes(device: torch.device | str) -> int:
    """The last-level cache the weights compete for: the CPU's L3 (sysfs), a GPU's L2."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * MiB))
    return llc_bytes()


def streamed_bytes(model: nn.Module) -> int:
    """Bytes of the weights a forward reads in full: every parameter and buffer except
    embedding tables (of which a forward gathers a few rows)."""
    emb = {id(p) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for p in m.parameters()}
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in emb}
    return sum(t.numel() * t.element_size() for t in tensors.values())


MAX_COPIES = 64  # bound on the weight copies a layer rotates over (memory, set-up time)


def weight_copies(model_bytes: int, cache: int, smallest_bytes: int) -> int:
    """How many copies of a layer to rotate over while timing it: 1 when the model's
    streamed weights fit in ``cache`` (in the model, the layer's weights stay cached
    between forwards), else enough that the smallest candidate's copies fill twice
    the cache (in the model, its weights come from memory), at most :data:`MAX_COPIES`."""
    if model_bytes <= cache:
        return 1
    return min(MAX_COPIES, rotation_sets(max(1, smallest_bytes), cache, minimum=1))


class CachedOutput(nn.Module):
    """Stands in for a measured layer while the rest of the model is timed: returns the
    layer's output recorded on the example input, at no cost."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.out


def time_rest(model: nn.Module, example: ExampleInput, stand_ins: Mapping[str, nn.Module], timer: Timer) -> float:
    """Seconds per forward of ``model`` with the modules named in ``stand_ins`` swapped
    for the given stand-ins (put back afterwards, also on error): what the model spends
    outside the measured layers, timed directly rather than as a difference of two
    larger, noisier times."""
    from effdl.convert import _set_submodule

    saved = {name: model.get_submodule(name) for name in stand_ins}
    try:
        for name, mod in stand_ins.items():
            _set_submodule(model, name, mod)
        with torch.no_grad():
            example.run(model)  # fails here, not in the timer, when a stand-in does not fit
            return timer(REST_LABEL, {"rest": [lambda: example.run(model)]})["rest"]
    finally:
        for name, mod in saved.items():
            _set_submodule(model, name, mod)
