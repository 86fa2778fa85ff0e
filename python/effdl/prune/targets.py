"""Which layers pruning acts on, and the checks every pruning entry point shares.

Prunable weights are those of ``nn.Conv1d``, ``nn.Conv2d``, ``nn.Conv3d`` and
``nn.Linear`` (subclasses included): they hold almost all the weights and all the
FLOPs of the models this library targets. Biases, normalisation layers and
embeddings stay dense: they are tiny (or, for embeddings, a lookup with no
multiplications to save) and pruning them costs accuracy for nothing.
Transposed convolutions are not pruned either (their weight is laid out
``[in, out, *kernel]``, so "input dimension" means something else).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

#: ``exclude`` is a collection of names (module names such as ``"features.0"`` or
#: weight names such as ``"features.0.weight"``) or a predicate ``(module, name) -> bool``
#: (the argument order of :func:`effdl.sparsify_`'s ``filter_fn``) returning True to skip.
Exclude = Iterable[str] | Callable[[nn.Module, str], bool] | None


@dataclass(frozen=True)
class Target:
    """One prunable weight: its module, the module's name and the weight's parameter name."""

    module_name: str
    module: nn.Module

    @property
    def weight_name(self) -> str:
        return f"{self.module_name}.weight" if self.module_name else "weight"

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight


def is_prunable(module: nn.Module) -> bool:
    return (
        isinstance(module, PRUNABLE_TYPES)
        and isinstance(getattr(module, "weight", None), nn.Parameter)
        and not isinstance(module.weight, nn.parameter.UninitializedParameter)
        and module.weight.is_floating_point()
    )


def prunable_layers(model: nn.Module) -> list[Target]:
    """Every prunable layer of ``model`` in registration order, a shared (tied)
    weight listed once, under its first name."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    seen: set[int] = set()
    out = []
    for name, mod in model.named_modules():
        if is_prunable(mod) and id(mod.weight) not in seen:
            seen.add(id(mod.weight))
            out.append(Target(name, mod))
    return out


def select_layers(
    model: nn.Module, exclude: Exclude = None, keep_first_last: bool = True, what: str = "prune"
) -> tuple[list[Target], list[tuple[str, str]]]:
    """The layers to prune and the skipped ones with the reason.

    ``keep_first_last`` leaves the first and the last prunable layer (registration
    order: the stem convolution and the final classifier of a usual CNN) dense.
    They hold few weights and are the most sensitive to pruning; the standard
    practice of the pruning literature (Han et al. 2015, Zhu & Gupta 2017,
    Gale et al. 2019) is to keep them, which is why it is the default.

    Raises ``ValueError`` when ``model`` has no prunable layer, or none is left.
    """
    layers = prunable_layers(model)
    if not layers:
        raise ValueError(
            f"{what}: the model has no prunable layer (weights of nn.Conv1d/2d/3d or nn.Linear)"
        )
    is_excluded = _exclusion(exclude)
    chosen, skipped = [], []
    for i, target in enumerate(layers):
        if keep_first_last and len(layers) > 1 and i in (0, len(layers) - 1):
            skipped.append((target.module_name, "first or last prunable layer (keep_first_last=True)"))
        elif is_excluded(target):
            skipped.append((target.module_name, "excluded"))
        else:
            chosen.append(target)
    if not chosen:
        raise ValueError(
            f"{what}: every prunable layer is excluded ({len(layers)} found; check exclude= and keep_first_last=)"
        )
    return chosen, skipped


def _exclusion(exclude: Exclude) -> Callable[[Target], bool]:
    if exclude is None:
        return lambda target: False
    if callable(exclude):
        return lambda target: bool(exclude(target.module, target.module_name))
    if isinstance(exclude, str):  # a lone name, not an iterable of characters
        exclude = [exclude]
    names = set(exclude)
    if not all(isinstance(n, str) for n in names):
        raise TypeError("exclude must be a predicate (module, name) -> bool or a collection of layer names")
    return lambda target: target.module_name in names or target.weight_name in names


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """``sparsity`` as a float in ``[0, 1)``; ``ValueError`` otherwise."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1), got {sparsity!r}")
    sparsity = float(sparsity)
    if not (math.isfinite(sparsity) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"{name} must be in [0, 1) (the fraction of weights set to zero), got {sparsity}")
    return sparsity


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """``ValueError`` naming ``what`` when ``tensor`` holds NaN or infinity."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{what} contains NaN or infinity; pruning needs finite values")
