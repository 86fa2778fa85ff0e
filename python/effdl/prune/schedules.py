"""Pruning over time: iterative prune → fine-tune rounds, and gradual pruning during training."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from effdl.prune.importance import LossFn, check_criterion
from effdl.prune.report import PruneReport
from effdl.prune.targets import Exclude, check_sparsity
from effdl.prune.unstructured import SCOPES, prune


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def geometric_sparsities(final_sparsity: float, steps: int) -> list[float]:
    """The sparsity after each of ``steps`` rounds that each remove the same
    fraction of the remaining weights: ``s_i = 1 − (1 − s_f)^(i/steps)``, the last
    one exactly ``final_sparsity``."""
    final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
    _check_int(steps, "steps", 1)
    out = [1.0 - (1.0 - final_sparsity) ** (i / steps) for i in range(1, steps)]
    return [*out, final_sparsity]


def iterative_prune(
    model: nn.Module,
    final_sparsity: float,
    steps: int,
    fine_tune: Callable[[nn.Module, int], object],
    criterion: str = "magnitude",
    scope: str = "global",
    loss_fn: LossFn | None = None,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    batches: int = 8,
    exclude: Exclude = None,
    keep_first_last: bool = True,
    verbose: bool = False,
) -> list[PruneReport]:
    """Reach ``final_sparsity`` in ``steps`` prune → fine-tune rounds (Han et al. 2015).

    Round ``i`` prunes to :func:`geometric_sparsities` ``[i]`` and then calls
    ``fine_tune(model, i)`` (``i`` from 0), which trains the model with any
    ``torch.optim`` optimizer: the masks keep pruned weights at zero.
    The other arguments are those of :func:`prune`.

    Returns:
        the :class:`PruneReport` of each round.
    """
    check_criterion(criterion)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if not callable(fine_tune):
        raise ValueError("fine_tune must be a callable fine_tune(model, round)")
    reports = []
    for i, sparsity in enumerate(geometric_sparsities(final_sparsity, steps)):
        reports.append(prune(model, sparsity, criterion, scope, loss_fn, data, batches, exclude, keep_first_last,
                             verbose))
        fine_tune(model, i)
    return reports


class GradualPruner:
    """Gradual pruning during training with the cubic schedule of Zhu & Gupta (2017).

    Every ``frequency`` training steps from ``start_step`` (``t0``) to ``end_step``
    the model is pruned to

        ``s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (end_step − t0))³``

    (``s_i`` = ``initial_sparsity``, ``s_f`` = ``final_sparsity``, and
    ``end_step − t0`` is the paper's ``n·Δt``), so pruning is fast early, while
    the network can still recover, and slow near the end. ``end_step`` itself is
    always an update step, so the model ends at exactly ``final_sparsity``.

    Call :meth:`step` once per training step, after ``optimizer.step()`` (e.g.
    as ``effdl.training.train``'s ``after_step``); call ``t`` (0-based) handles
    training step ``t``, so training needs at least ``end_step + 1`` steps.
    Pruning options (``criterion``, ``scope``, data for the gradient criteria,
    ``exclude``, ``keep_first_last``) are those of :func:`prune`.
    """

    def __init__(
        self,
        model: nn.Module,
        final_sparsity: float,
        start_step: int,
        end_step: int,
        frequency: int,
        initial_sparsity: float = 0.0,
        criterion: str = "magnitude",
        scope: str = "global",
        loss_fn: LossFn | None = None,
        data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
        batches: int = 8,
        exclude: Exclude = None,
        keep_first_last: bool = True,
    ) -> None:
        self.final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
        self.initial_sparsity = check_sparsity(initial_sparsity, "initial_sparsity")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(f"initial_sparsity ({initial_sparsity}) must not exceed final_sparsity ({final_sparsity})")
        self.start_step = _check_int(start_step, "start_step", 0)
        self.end_step = _check_int(end_step, "end_step", start_step + 1)
        self.frequency = _check_int(frequency, "frequency", 1)
        check_criterion(criterion)
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if criterion != "magnitude" and data is None:
            raise ValueError(f"criterion={criterion!r} needs data= (an iterable of (inputs, targets))")
        self.model = model
        self._prune_args = {"criterion": criterion, "scope": scope, "loss_fn": loss_fn, "data": data,
                            "batches": batches, "exclude": exclude, "keep_first_last": keep_first_last}
        self.current_step = 0
        self.last_report: PruneReport | None = None

    def cubic(self, t: float) -> float:
        """The schedule's formula at step ``t``, clamped to ``[start_step, end_step]``."""
        t = min(max(t, self.start_step), self.end_step)
        progress = (t - self.start_step) / (self.end_step - self.start_step)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** 3

    def is_update_step(self, step: int) -> bool:
        """Whether the model is pruned at training step ``step``."""
        if not self.start_step <= step <= self.end_step:
            return False
        return (step - self.start_step) % self.frequency == 0 or step == self.end_step

    def sparsity_at(self, step: int) -> float:
        """The target sparsity in force after training step ``step``: 0 before
        ``start_step``, the formula at the last update step up to ``step``, then
        ``final_sparsity`` from ``end_step`` on."""
        if step < self.start_step:
            return 0.0
        if step >= self.end_step:
            return self.final_sparsity
        last_update = self.start_step + (step - self.start_step) // self.frequency * self.frequency
        return self.cubic(last_update)

    def step(self) -> float:
        """Advance one training step, pruning when it is an update step.

        Returns:
            the target sparsity now in force.
        """
        t = self.current_step
        if self.is_update_step(t):
            self.last_report = prune(self.model, self.sparsity_at(t), verbose=False, **self._prune_args)
        self.current_step += 1
        return self.sparsity_at(t)

    @property
    def done(self) -> bool:
        """True once ``end_step`` has been handled (the final sparsity is reached)."""
        return self.current_step > self.end_step

    def state_dict(self) -> dict[str, int]:
        """The schedule's position, to resume training (the masks live in the model's state)."""
        return {"current_step": self.current_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.current_step = _check_int(int(state["current_step"]), "current_step", 0)
