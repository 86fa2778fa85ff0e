"""The measurement behind ``sparsify_``/``quantize_``'s ``policy="faster_only"``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from effdl.plan.measure import ExampleInput, Timer, capture_inputs, interleaved_timer
from effdl.plan.solver import DEFAULT_MARGIN


def slower_reasons(
    model: nn.Module,
    example_input,
    make: Callable[[nn.Linear], nn.Module],
    why_not: Callable[[nn.Linear], str | None],
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    timer: Timer | None = None,
    margin: float = DEFAULT_MARGIN,
    kinds: tuple[type[nn.Module], ...] = (nn.Linear,),
) -> dict[int, str]:
    """``id(layer) -> reason`` for each convertible layer (type exactly one of ``kinds``) that ``make`` would not
    make at least ``1 + margin`` times faster on the input it gets from
    ``example_input`` (or that the example input does not run)."""
    timer = timer or interleaved_timer()
    example = ExampleInput.of(example_input)
    targets = {name: mod for name, mod in model.named_modules()
               if type(mod) in kinds and (filter_fn is None or filter_fn(mod, name)) and not why_not(mod)}
    captured = capture_inputs(model, example, targets)
    reasons: dict[int, str] = {}
    for name, lin in targets.items():
        if name not in captured:
            reasons[id(lin)] = "not run by example_input, so not measured"
            continue
        x, new = captured[name].x, make(lin).eval()
        secs = timer(name, {"dense": [lambda lin=lin, x=x: lin(x)], "converted": [lambda new=new, x=x: new(x)]})
        speedup = secs["dense"] / secs["converted"]
        if speedup < 1 + margin:
            reasons[id(lin)] = f"not faster on example_input: {speedup:.2f}x dense (needs >= {1 + margin:.2f}x)"
    return reasons
