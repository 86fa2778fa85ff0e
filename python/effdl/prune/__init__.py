"""Pruning: importance scores, unstructured and N:M masks, structured channel
pruning that physically shrinks a model, schedules, lottery tickets.

One-shot::

    from effdl import prune
    prune.magnitude_prune(model, 0.8)              # global, first/last layer dense
    train(model, ...)                              # any torch.optim optimizer; zeros stay zeros
    prune.make_permanent(model)                    # plain model, sparse weights
    print(prune.sparsity_report(model, x))

N:M for the sparse kernels::

    prune.nm_prune(model, 2, 4); train(model, ...); prune.make_permanent(model)
    effdl.sparsify_(model, 2, 4)                   # the same weights, in N:M storage

Structured, for a smaller dense model::

    small = prune.channel_prune(model, 0.5, example_input)   # whole filters removed, a new model
    print(small.prune_report)

Masks are bool ``weight_mask`` buffers next to a plain ``weight`` Parameter
(see :mod:`effdl.prune.masks`); a pruned checkpoint loads into a pruned model
with ``load_state_dict`` and into a fresh one with :func:`restore_masks`.
"""

from effdl.prune.channel import ChannelGroup, ChannelPruneReport, channel_groups, channel_prune
from effdl.prune.importance import CRITERIA, importance
from effdl.prune.lottery import LotteryTicket
from effdl.prune.masks import apply_masks, get_mask, make_permanent, restore_masks
from effdl.prune.nm import nm_prune
from effdl.prune.report import LayerSparsity, PruneReport, SparsityReport, sparsity_report
from effdl.prune.schedules import GradualPruner, geometric_sparsities, iterative_prune
from effdl.prune.targets import PRUNABLE_TYPES, prunable_layers
from effdl.prune.unstructured import magnitude_prune, prune

__all__ = [
    "CRITERIA",
    "PRUNABLE_TYPES",
    "ChannelGroup",
    "ChannelPruneReport",
    "GradualPruner",
    "LayerSparsity",
    "LotteryTicket",
    "PruneReport",
    "SparsityReport",
    "apply_masks",
    "channel_groups",
    "channel_prune",
    "geometric_sparsities",
    "get_mask",
    "importance",
    "iterative_prune",
    "magnitude_prune",
    "make_permanent",
    "nm_prune",
    "prunable_layers",
    "prune",
    "restore_masks",
    "sparsity_report",
]
