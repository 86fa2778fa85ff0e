"""Lottery-ticket pruning with weight rewinding (Frankle & Carbin 2019; Frankle et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn

from effdl.prune.masks import MASK, apply_masks
from effdl.prune.report import PruneReport
from effdl.prune.targets import Exclude
from effdl.prune.unstructured import magnitude_prune


class LotteryTicket:
    """Find a sparse sub-network that trains to full accuracy from its early weights.

    The procedure, one round at a time::

        ticket = LotteryTicket(model, rewind_iteration=k)   # records now when k == 0
        train(model, ..., after_step=ticket.step)            # records after step k when k > 0
        ticket.prune(0.5)      # global magnitude pruning of the trained weights
        ticket.rewind()        # survivors back to the recorded values, pruned stay 0
        train(model, ...)      # retrain the ticket (a fresh optimizer)
        ticket.prune(0.75); ticket.rewind(); train(...)      # iterative rounds

    ``rewind_iteration=0`` is the original lottery ticket (reset to the
    initialisation); a small ``k > 0`` (late rewinding) finds tickets in larger
    networks. Everything in the model's ``state_dict`` but the masks is recorded
    and restored: parameters and buffers such as BatchNorm statistics, as in the
    authors' implementation.

    Args:
        model: the dense (or already pruned) model before training.
        rewind_iteration: the number of :meth:`step` calls after which the
            weights are recorded (0: now).
        exclude, keep_first_last: which layers :meth:`prune` leaves dense (see :func:`prune`).
    """

    def __init__(self, model: nn.Module, rewind_iteration: int = 0, exclude: Exclude = None,
                 keep_first_last: bool = True) -> None:
        if isinstance(rewind_iteration, bool) or not isinstance(rewind_iteration, int) or rewind_iteration < 0:
            raise ValueError(f"rewind_iteration must be an int >= 0, got {rewind_iteration!r}")
        self.model = model
        self.rewind_iteration = rewind_iteration
        self.exclude = exclude
        self.keep_first_last = keep_first_last
        self.iteration = 0
        self.rounds: list[PruneReport] = []
        self._recorded: dict[str, torch.Tensor] | None = None
        if rewind_iteration == 0:
            self._record()

    @property
    def recorded(self) -> dict[str, torch.Tensor] | None:
        """The recorded state (``state_dict`` entries except masks), or None before it is taken."""
        return self._recorded

    def step(self) -> None:
        """Count one training iteration; records the weights after the ``rewind_iteration``-th."""
        self.iteration += 1
        if self._recorded is None and self.iteration == self.rewind_iteration:
            self._record()

    def prune(self, sparsity: float) -> PruneReport:
        """Global magnitude pruning of the current (trained) weights to ``sparsity``
        of the selected layers; earlier rounds' zeros stay pruned and count, so
        iterative rounds pass growing targets (e.g. ``1 − 0.8^r`` for 20 % per round)."""
        report = magnitude_prune(self.model, sparsity, scope="global", exclude=self.exclude,
                                 keep_first_last=self.keep_first_last, verbose=False)
        self.rounds.append(report)
        return report

    def rewind(self) -> nn.Module:
        """Reset every recorded entry to its recorded value and re-apply the masks.

        Create a new optimizer afterwards: the old one's momentum belongs to the
        trained weights.
        """
        if self._recorded is None:
            raise RuntimeError(f"LotteryTicket.rewind: nothing recorded yet (rewind_iteration="
                               f"{self.rewind_iteration}, {self.iteration} step() calls so far)")
        state = self.model.state_dict()
        with torch.no_grad():
            for key, value in self._recorded.items():
                state[key].copy_(value)
        return apply_masks(self.model)

    def _record(self) -> None:
        self._recorded = {key: value.detach().clone() for key, value in self.model.state_dict().items()
                          if not key.endswith(MASK)}
