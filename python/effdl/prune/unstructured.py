"""Unstructured pruning to an exact sparsity, one threshold per layer or one for the model."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from effdl.prune.importance import LossFn, check_criterion, importance
from effdl.prune.masks import get_mask, set_mask
from effdl.prune.report import PruneReport
from effdl.prune.targets import Exclude, Target, check_sparsity, select_layers

SCOPES = ("global", "layer")


def prune(
    model: nn.Module,
    sparsity: float,
    criterion: str = "magnitude",
    scope: str = "global",
    loss_fn: LossFn | None = None,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    batches: int = 8,
    exclude: Exclude = None,
    keep_first_last: bool = True,
    verbose: bool = True,
) -> PruneReport:
    """Set the least important weights of ``model`` to zero, in place, and keep them there.

    Exactly ``round(sparsity · N)`` weights are pruned (never all ``N``), where
    ``N`` counts the weights of one layer (``scope="layer"``: every layer gets the
    same sparsity) or of all the selected layers together (``scope="global"``:
    one threshold across layers, so layers with less important weights lose
    more). Among equal scores the one that comes first (layer registration
    order, then row-major position) is pruned first, so the result is
    deterministic. Each pruned layer keeps a bool ``weight_mask`` buffer and
    its weight stays zero where pruned through optimizer steps and
    ``state_dict`` round trips (see :mod:`effdl.prune.masks`).

    Pruning an already pruned model only adds zeros: previously pruned weights
    stay pruned and count towards the target, and a target below the current
    sparsity leaves the layer as it is.

    Args:
        sparsity: fraction of weights to zero, in ``[0, 1)``.
        criterion: ``"magnitude"``, ``"gradient"`` or ``"taylor"`` (:func:`importance`).
        scope: ``"global"`` or ``"layer"``.
        loss_fn, data, batches: for the gradient criteria (:func:`importance`).
        exclude: layer names (``"features.0"`` or ``"features.0.weight"``) or a
            predicate ``(module, name) -> bool`` for layers to leave dense.
        keep_first_last: also leave the first and last prunable layers (the
            stem conv and the classifier of a usual CNN) dense; the target
            sparsity then applies to the other layers.
        verbose: print a one-line summary.

    Returns:
        a :class:`PruneReport` (kept/total weights per pruned layer, skipped layers).
    """
    sparsity = check_sparsity(sparsity)
    check_criterion(criterion)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    targets, skipped = select_layers(model, exclude, keep_first_last, what="prune")
    scores = importance(model, criterion, loss_fn=loss_fn, data=data, batches=batches)
    flat = [_scores_with_old_zeros_first(scores[t.weight_name], t) for t in targets]
    if scope == "global":
        pruned = _lowest(torch.cat(flat), sparsity).split([f.numel() for f in flat])
    else:
        pruned = [_lowest(f, sparsity) for f in flat]
    report = PruneReport(f"prune[{criterion}, {scope}]", skipped=skipped)
    for t, p in zip(targets, pruned, strict=True):
        set_mask(t.module, ~p.reshape(t.weight.shape))
        report.pruned[t.module_name] = (int(t.weight.numel() - p.sum()), t.weight.numel())
    if verbose:
        print(report.summary())
    return report


def magnitude_prune(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    exclude: Exclude = None,
    keep_first_last: bool = True,
    verbose: bool = True,
) -> PruneReport:
    """:func:`prune` by ``|w|``: the classic magnitude pruning (Han et al. 2015)."""
    return prune(model, sparsity, "magnitude", scope, exclude=exclude, keep_first_last=keep_first_last,
                 verbose=verbose)


def _scores_with_old_zeros_first(score: torch.Tensor, target: Target) -> torch.Tensor:
    """Flat float scores where already pruned weights rank below everything, so masks only shrink."""
    flat = score.detach().reshape(-1).to(torch.float64 if score.dtype == torch.float64 else torch.float32)
    old = get_mask(target.module)
    if old is not None:
        flat = flat.masked_fill(~old.reshape(-1), -math.inf)
    return flat


def _lowest(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask of the ``round(sparsity · N)`` lowest of ``scores`` (1-D), never all
    ``N`` but always every ``-inf`` (already pruned) one; ties go to the lower index."""
    total = scores.numel()
    already = int(torch.isneginf(scores).sum())
    k = max(min(math.floor(sparsity * total + 0.5), total - 1), already)
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    threshold = scores.kthvalue(k).values  # O(N): no full sort of the model's weights
    below = scores < threshold
    ties = scores == threshold
    # of the scores equal to the threshold, the first (k - #below) in index order go
    tie_rank = torch.cumsum(ties.to(torch.int64), 0)
    return below | (ties & (tie_rank <= k - int(below.sum())))
