"""Pruning masks that keep ``weight`` a plain Parameter, physically zero where pruned.

A pruned layer gets a bool buffer ``weight_mask`` (same shape as ``weight``,
True = kept) and its ``weight`` is multiplied by it once. Nothing is
reparametrised (unlike ``torch.nn.utils.prune``'s ``weight_orig``): the model
stays a plain model that :func:`effdl.sparsify_`, :func:`effdl.quantize_`,
``torch.compile`` and DDP see unchanged, and the forward pass does no extra
arithmetic (a forward pre-hook only notes the layer, for copies of a model).

The zeros are kept by three mechanisms, none of which writes weights during the
forward pass (safe when a weight is used by several forwards before a backward):

* optimizer steps: two process-wide ``torch.optim`` hooks, registered when the
  first mask is attached, mask the gradient of every masked weight the stepping
  optimizer holds before the step (so momentum and Adam moments get nothing new there)
  and multiply the weight by its mask after it (which undoes what state from
  before pruning, or weight decay in any form, would move). This covers every
  ``torch.optim`` optimizer, including ``foreach``/``fused`` ones and those that
  wrap others (ZeroRedundancyOptimizer). Weights an optimizer does not hold are
  never touched. Gradient clipping before the step sees the unmasked gradient.
* ``load_state_dict``: a post-hook on the layer re-applies the mask (the one
  just loaded, when the checkpoint holds one).
* anything else that writes weights (a custom optimizer, manual edits): call
  :func:`apply_masks`.

Under DDP the masks are buffers, identical on every rank (and broadcast from
rank 0 with the other buffers); the hooks act on the inner modules' parameters
after the gradients are reduced, so every rank applies the same update.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from effdl.prune.targets import is_prunable

MASK = "weight_mask"

# Layers that carry a mask, for the optimizer hooks. Weak, so a model that goes
# away leaves no trace; a copy (deepcopy, unpickling) joins on its first forward
# or load_state_dict.
_masked_layers: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_optimizer_hooks: list[Any] = []


def has_mask(module: nn.Module) -> bool:
    return isinstance(getattr(module, MASK, None), torch.Tensor)


def get_mask(module: nn.Module) -> torch.Tensor | None:
    """The bool keep-mask of a pruned layer, or None when it is not pruned."""
    return getattr(module, MASK) if has_mask(module) else None


def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Attach (or replace) the keep-mask of ``module`` and zero its pruned weights.

    Args:
        mask: bool (or 0/1) tensor of ``module.weight``'s shape, True where kept.
    """
    weight = module.weight
    if tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the weight's {tuple(weight.shape)}")
    mask = mask.detach().to(device=weight.device, dtype=torch.bool)
    if has_mask(module):
        getattr(module, MASK).copy_(mask)
    else:
        module.register_buffer(MASK, mask.clone())
        module.register_forward_pre_hook(_join_registry)
        module.register_load_state_dict_post_hook(_reapply_after_load)
    _track(module)
    with torch.no_grad():
        weight.mul_(getattr(module, MASK))


def apply_masks(model: nn.Module) -> nn.Module:
    """Multiply every masked weight of ``model`` by its mask (after writing weights by hand)."""
    with torch.no_grad():
        for mod in model.modules():
            if has_mask(mod):
                mod.weight.mul_(getattr(mod, MASK))
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Drop the masks and their hooks, leaving the zeros in the weights.

    The result is a plain model with sparse weights, ready for
    :func:`effdl.sparsify_` / :func:`effdl.quantize_` or export. Further
    training may make pruned weights nonzero again.
    """
    for mod in model.modules():
        if not has_mask(mod):
            continue
        with torch.no_grad():
            mod.weight.mul_(getattr(mod, MASK))
        delattr(mod, MASK)
        _remove_hook(mod._forward_pre_hooks, _join_registry)
        _remove_hook(mod._load_state_dict_post_hooks, _reapply_after_load)
        _masked_layers.discard(mod)
    return model


def restore_masks(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> nn.Module:
    """Load a pruned checkpoint into a model that has no masks yet (e.g. freshly built).

    Every ``<layer>.weight_mask`` entry of ``state_dict`` becomes the mask of
    that layer, then the whole ``state_dict`` is loaded with ``strict``. A model
    that already carries the same masks can use plain ``load_state_dict``.

    Returns:
        ``model``, pruned as the checkpoint was.
    """
    suffix = "." + MASK
    for key, mask in state_dict.items():
        if key != MASK and not key.endswith(suffix):
            continue
        module_name = key[: -len(suffix)] if key.endswith(suffix) else ""
        try:
            module = model.get_submodule(module_name)
        except AttributeError as e:
            raise ValueError(f"restore_masks: the checkpoint has a mask for {module_name!r}, "
                             "which this model does not have") from e
        if not is_prunable(module):
            raise ValueError(f"restore_masks: {module_name!r} is a {type(module).__name__}, not a prunable layer")
        if tuple(mask.shape) != tuple(module.weight.shape):
            raise ValueError(f"restore_masks: the mask of {module_name!r} has shape {tuple(mask.shape)}, "
                             f"the layer's weight {tuple(module.weight.shape)}")
        set_mask(module, mask)
    model.load_state_dict(state_dict, strict=strict)
    return model


def is_mask_hook(hook: Any) -> bool:
    """Whether ``hook`` is one the masks install (conversions may drop those with the mask)."""
    return hook is _join_registry or hook is _reapply_after_load


def _track(module: nn.Module) -> None:
    _masked_layers.add(module)
    if not _optimizer_hooks:
        _optimizer_hooks.append(register_optimizer_step_pre_hook(_mask_gradients))
        _optimizer_hooks.append(register_optimizer_step_post_hook(_mask_weights))


def _join_registry(module: nn.Module, args: Any) -> None:
    # a forward pre-hook that only registers the layer (a deepcopy of a pruned
    # model, for instance); it never writes the weight, so it is safe when one
    # weight is used by several forwards before a backward
    if not torch.compiler.is_compiling() and has_mask(module):
        _masked_layers.add(module)


def _reapply_after_load(module: nn.Module, incompatible_keys: Any) -> None:
    if has_mask(module):
        _track(module)
        with torch.no_grad():
            module.weight.mul_(getattr(module, MASK))


def _remove_hook(hooks: dict, fn: Any) -> None:
    for key in [k for k, hook in hooks.items() if hook is fn]:
        del hooks[key]


def _masked_in(optimizer: torch.optim.Optimizer) -> list[nn.Module]:
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [mod for mod in list(_masked_layers) if has_mask(mod) and id(mod.weight) in held]


def _mask_gradients(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    with torch.no_grad():
        for mod in _masked_in(optimizer):
            if mod.weight.grad is not None:
                mod.weight.grad.mul_(getattr(mod, MASK))


def _mask_weights(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    with torch.no_grad():
        for mod in _masked_in(optimizer):
            mod.weight.mul_(getattr(mod, MASK))
