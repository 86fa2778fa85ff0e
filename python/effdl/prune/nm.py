"""N:M semi-structured pruning: at most ``n`` nonzeros in every ``m`` consecutive input weights.

Groups run along the input dimension, the reduction dimension of the layer's
matrix multiply, which is what N:M sparse kernels skip:

* ``nn.Linear`` ``[out, in]``: groups of ``m`` consecutive columns of a row, the
  layout of :mod:`effdl.formats`, so :func:`effdl.sparsify_` after
  :func:`make_permanent` stores exactly the weights kept here.
* convolutions ``[out, in/groups, *kernel]``: groups of ``m`` consecutive input
  channels at each kernel position of each filter, i.e. along the last
  dimension of the weight viewed channels-last as ``[out · prod(kernel), in/groups]``.
  This is the order of the implicit GEMM on channels-last activations, used by
  sparse tensor cores (and NVIDIA's ASP); a 1×1 convolution gets the pattern of
  the equivalent ``nn.Linear``. It needs ``in_channels / groups`` divisible by ``m``.

Layers whose input dimension is not a multiple of ``m`` are skipped (and reported).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from effdl.formats import check_pattern
from effdl.prune.importance import LossFn, check_criterion, importance
from effdl.prune.masks import get_mask, set_mask
from effdl.prune.report import PruneReport
from effdl.prune.targets import Exclude, select_layers


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """A weight-shaped tensor as ``[rows, K]`` with the N:M groups along the last dim."""
    return t.movedim(1, -1).reshape(-1, t.shape[1]) if t.dim() > 2 else t


def from_rows(rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`as_rows`."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    return rows.reshape(shape[0], *shape[2:], shape[1]).movedim(-1, 1)


def nm_keep(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool ``[rows, K]``: True at the ``n`` highest scores of every group of ``m``
    consecutive columns, ties towards the lower column (as :func:`effdl.formats.nm_mask`)."""
    rows, k = scores.shape
    groups = scores.reshape(rows, k // m, m)
    top = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., :n]
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True).reshape(rows, k)


def nm_prune(
    model: nn.Module,
    n: int = 2,
    m: int = 4,
    criterion: str = "magnitude",
    loss_fn: LossFn | None = None,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    batches: int = 8,
    exclude: Exclude = None,
    keep_first_last: bool = True,
    verbose: bool = True,
) -> PruneReport:
    """Make the prunable layers of ``model`` N:M sparse, in place, and keep them so.

    In every group of ``m`` consecutive input weights (see the module docs for
    convolutions) the ``n`` most important stay; weights pruned before stay
    pruned, so a group may end with fewer than ``n``. The masks are kept through
    fine-tuning like those of :func:`prune`. After :func:`make_permanent`,
    ``effdl.sparsify_(model, n, m)`` converts the ``nn.Linear`` layers without
    changing a weight.

    Args:
        n, m: the pattern, ``1 <= n < m <= 16``.
        criterion, loss_fn, data, batches: importance criterion (:func:`importance`).
        exclude, keep_first_last, verbose: as for :func:`prune`.

    Returns:
        a :class:`PruneReport`; layers whose input dimension is not a multiple
        of ``m`` are in its ``skipped`` list.

    Raises:
        ValueError: a bad pattern or criterion, or no layer that can be made N:M.
    """
    check_pattern(n, m)
    check_criterion(criterion)
    targets, skipped = select_layers(model, exclude, keep_first_last, what="nm_prune")
    fitting = []
    for t in targets:
        k = t.weight.shape[1]
        if k % m:
            skipped.append((t.module_name, f"input dimension {k} not a multiple of {m}"))
        else:
            fitting.append(t)
    if not fitting:
        raise ValueError(f"nm_prune: no selected layer has an input dimension divisible by m={m} "
                         f"(skipped: {', '.join(name for name, _ in skipped)})")
    scores = importance(model, criterion, loss_fn=loss_fn, data=data, batches=batches)
    report = PruneReport(f"nm_prune[{n}:{m}, {criterion}]", skipped=skipped)
    for t in fitting:
        score = scores[t.weight_name].detach()
        score = score.to(torch.promote_types(score.dtype, torch.float32))
        old = get_mask(t.module)
        if old is not None:  # scores are >= 0: pruned weights rank last in their group
            score = score.masked_fill(~old, -1.0)
        keep = from_rows(nm_keep(as_rows(score), n, m), t.weight.shape)
        if old is not None:
            keep &= old
        set_mask(t.module, keep)
        report.pruned[t.module_name] = (int(keep.sum()), keep.numel())
    if verbose:
        print(report.summary())
    return report
