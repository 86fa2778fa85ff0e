"""Deterministic timers for the planner's tests: a cost model instead of a clock.

``CostTimer`` runs each call once with a global forward hook that adds up a fixed
cost per executed leaf module (by type and size); that sum is the call's "time".
The cost of a model is then exactly the sum of its modules' costs, so a plan's
prediction can be checked exactly against the "measured" planned model.
"""

from __future__ import annotations

import torch
from torch import nn

from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear, SparseQLinear
from effdl.plan.measure import CachedOutput

# cost factors relative to a dense nn.Linear of the same size
FACTORS = {"dense": 1.0, "int8_dynamic": 0.25, "int8_weight_only": 0.5, "sparse_2_4": 2.0, "sparse_int8": 0.4,
           "dwsep": 0.5}


def module_cost(mod: nn.Module, out) -> float:
    numel = out.numel() if isinstance(out, torch.Tensor) else 1
    if isinstance(mod, (nn.Identity, CachedOutput)):  # what a fused run leaves behind, the planner's stubs: free
        return 0.0
    if type(mod) is nn.Linear:
        return numel * mod.in_features * FACTORS["dense"]
    if isinstance(mod, QLinear):
        kind = "int8_dynamic" if mod.mode == "dynamic" else "int8_weight_only"
        return numel * mod.in_features * FACTORS[kind]
    if isinstance(mod, SparseQLinear):
        return numel * mod.in_features * FACTORS["sparse_int8"]
    if isinstance(mod, SparseLinear):
        return numel * mod.in_features * FACTORS["sparse_2_4"]
    if isinstance(mod, nn.Conv2d):
        return numel * mod.weight[0].numel()
    if isinstance(mod, DWSeparableConv2d):
        hw = out.shape[-1] * out.shape[-2]
        dense = hw * (mod.dw_weight.numel() + mod.pw_weight.numel()) + 3 * numel
        return dense * FACTORS["dwsep"]
    return float(numel)  # norms, activations, dropout, embeddings: one unit per output element


class CostTimer:
    """A :data:`effdl.plan.measure.Timer` returning the cost-model time (in "seconds" = cost * 1e-9)."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def __call__(self, label, calls):
        self.labels.append(label)
        out = {}
        for name, fns in calls.items():
            total = [0.0]

            def hook(mod, _args, result, total=total):
                if not any(True for _ in mod.children()):
                    total[0] += module_cost(mod, result)

            handle = nn.modules.module.register_module_forward_hook(hook)
            try:
                with torch.no_grad():
                    fns[0]()
            finally:
                handle.remove()
            out[name] = total[0] * 1e-9
        return out


class TableTimer:
    """Seconds from a table ``{(layer, name): s}``; unlisted entries take ``default``."""

    def __init__(self, table: dict, default: float = 1.0) -> None:
        self.table, self.default = table, default

    def __call__(self, label, calls):
        return {name: self.table.get((label, name), self.default) for name in calls}
