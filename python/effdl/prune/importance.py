"""Per-weight importance scores: magnitude, gradient and first-order Taylor."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from effdl.prune.targets import check_finite, prunable_layers

CRITERIA = ("magnitude", "gradient", "taylor")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


@torch.no_grad()
def _magnitudes(model: nn.Module) -> dict[str, torch.Tensor]:
    return {t.weight_name: t.weight.detach().abs() for t in prunable_layers(model)}


def importance(
    model: nn.Module,
    criterion: str = "magnitude",
    loss_fn: LossFn | None = None,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    batches: int = 8,
) -> dict[str, torch.Tensor]:
    """How much each prunable weight matters, one score per weight.

    Args:
        model: any module; its prunable weights are those of ``nn.Conv1d/2d/3d``
            and ``nn.Linear`` (see :mod:`effdl.prune.targets`).
        criterion:
            * ``"magnitude"``: ``|w|``.
            * ``"gradient"``: ``mean_b |∂L_b/∂w|``.
            * ``"taylor"``: ``mean_b |w · ∂L_b/∂w|``, the first-order estimate of
              the change of the loss when ``w`` is set to zero (Molchanov et al. 2017).
            ``L_b`` is the loss of batch ``b``. The absolute value is taken per
            batch and then averaged: near convergence the full-data gradient is
            close to zero for every weight, and it is the per-batch magnitudes
            that tell the weights apart.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (e.g. ``nn.CrossEntropyLoss()``);
            cross-entropy by default.
        data: iterable of ``(inputs, targets)`` batches; the first ``batches`` are
            used (moved to the model's device). Needed by the gradient criteria.
        batches: how many batches to average over (at least 1).

    Returns:
        ``{parameter name: scores}``, e.g. ``{"features.0.weight": ...}``: one
        non-negative tensor of the weight's shape and device per prunable weight,
        in registration order; in the weight's dtype for ``"magnitude"``, in
        float32 (float64 for a float64 weight) for the gradient criteria.
        Gradient criteria run the model in eval mode (dropout off, BatchNorm
        normalising with its running statistics, which stay unchanged) and leave
        the model's mode, ``requires_grad`` flags and ``.grad`` as they were.
        For a ``DistributedDataParallel`` model the scores are averaged over the
        ranks (each scoring its own batches), so that every rank prunes the same
        weights; pass the wrapper, not its ``.module``, unless ``data`` is the
        same on every rank.

    Raises:
        ValueError: unknown ``criterion``; a gradient criterion without ``data``,
            with ``batches < 1`` or with empty ``data``; no prunable layer; NaN or
            infinity in a weight or a score.
    """
    check_criterion(criterion)
    layers = prunable_layers(model)
    if not layers:
        raise ValueError("importance: the model has no prunable layer (weights of nn.Conv1d/2d/3d or nn.Linear)")
    for t in layers:
        check_finite(t.weight, f"importance: the weight {t.weight_name!r}")
    if criterion == "magnitude":
        return _magnitudes(model)
    if data is None:
        raise ValueError(f"importance: criterion={criterion!r} needs data= (an iterable of (inputs, targets))")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"importance: batches must be a positive int, got {batches!r}")
    loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
    weights = [t.weight for t in layers]
    # accumulate in float32 at least: half-precision sums lose the ranking
    scores = [torch.zeros_like(w, dtype=torch.promote_types(w.dtype, torch.float32)) for w in weights]
    device = weights[0].device
    was_training, needed_grad = model.training, [w.requires_grad for w in weights]
    ddp = model if isinstance(model, DistributedDataParallel) else None
    model.eval()
    seen = 0
    try:
        for w in weights:  # frozen layers are scored too
            w.requires_grad_(True)
        # no_sync: these backward passes are not training steps for DDP's gradient reducer
        with torch.enable_grad(), ddp.no_sync() if ddp is not None else contextlib.nullcontext():
            for x, y in itertools.islice(data, batches):
                loss = loss_fn(model(x.to(device)), y.to(device))
                # autograd.grad leaves every .grad as it was
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                with torch.no_grad():
                    for score, w, g in zip(scores, weights, grads, strict=True):
                        if g is not None:  # None: the layer took no part in this forward
                            score.add_((g * w if criterion == "taylor" else g).abs().to(score.dtype))
                seen += 1
    finally:
        model.train(was_training)
        for w, flag in zip(weights, needed_grad, strict=True):
            w.requires_grad_(flag)
    if seen == 0:
        raise ValueError("importance: data yielded no batch")
    for score in scores:
        score.div_(seen)
    if ddp is not None:  # each rank saw its own batches: average, so every rank prunes alike
        world = dist.get_world_size(ddp.process_group)
        for score in scores:
            dist.all_reduce(score, group=ddp.process_group)
            score.div_(world)
    out = {}
    for t, score in zip(layers, scores, strict=True):
        check_finite(score, f"importance: the {criterion} score of {t.weight_name!r}")
        out[t.weight_name] = score
    return out
