"""What a pruning call did (:class:`PruneReport`) and how sparse a model is (:func:`sparsity_report`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from effdl.models import count_flops
from effdl.nn import SparseLinear
from effdl.prune.targets import PRUNABLE_TYPES


@dataclass
class PruneReport:
    """The outcome of one pruning call.

    ``pruned`` maps each pruned layer (module name) to ``(kept, total)`` weights;
    ``skipped`` lists ``(module name, reason)`` for the prunable layers left alone.
    """

    action: str
    pruned: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over the pruned layers together."""
        total = sum(t for _, t in self.pruned.values())
        return 1.0 - sum(k for k, _ in self.pruned.values()) / total if total else 0.0

    def summary(self) -> str:
        reasons = Counter(reason for _, reason in self.skipped)
        why = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        line = (f"effdl.prune.{self.action}: pruned {len(self.pruned)} layers to {100 * self.sparsity:.2f}% "
                f"sparsity, skipped {len(self.skipped)}")
        return line + (f" ({why})" if why else "")

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class LayerSparsity:
    """One row of :class:`SparsityReport`. FLOPs are None without an example input."""

    name: str
    shape: tuple[int, ...]
    params: int
    nonzero: int
    flops: int | None = None
    nonzero_flops: int | None = None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.params if self.params else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Per-layer sparsity of the conv/linear layers (and ``SparseLinear``) of a model.

    ``params``/``nonzero`` are the weights of a layer before/after pruning (all
    of them / the nonzero ones); ``flops``/``nonzero_flops`` the FLOPs of one
    forward pass with every weight / with the nonzero ones only (the ideal
    speed-up of the sparsity), from :func:`effdl.models.count_flops`.
    """

    layers: tuple[LayerSparsity, ...]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def nonzero(self) -> int:
        return sum(r.nonzero for r in self.layers)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.params if self.params else 0.0

    @property
    def flops(self) -> int | None:
        return None if self._no_flops() else sum(r.flops or 0 for r in self.layers)

    @property
    def nonzero_flops(self) -> int | None:
        return None if self._no_flops() else sum(r.nonzero_flops or 0 for r in self.layers)

    def _no_flops(self) -> bool:
        return all(r.flops is None for r in self.layers)

    def __getitem__(self, name: str) -> LayerSparsity:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def __str__(self) -> str:
        with_flops = not self._no_flops()
        head = ["layer", "shape", "sparsity", "params", "nonzero"] + (["FLOPs", "nonzero FLOPs"] if with_flops else [])
        rows = [self._cells(r.name, "x".join(map(str, r.shape)), r.sparsity, r.params, r.nonzero, r.flops,
                            r.nonzero_flops, with_flops) for r in self.layers]
        rows.append(self._cells("total", "", self.sparsity, self.params, self.nonzero, self.flops,
                                self.nonzero_flops, with_flops))
        widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(len(head))]
        line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        rule = "-" * len(line(head))
        return "\n".join([line(head), rule, *map(line, rows[:-1]), rule, line(rows[-1])])

    @staticmethod
    def _cells(name, shape, sparsity, params, nonzero, flops, nonzero_flops, with_flops) -> list[str]:
        cells = [name, shape, f"{100 * sparsity:.2f}%", f"{params:,}", f"{nonzero:,}"]
        if with_flops:
            cells += ["-" if flops is None else f"{flops:,}", "-" if nonzero_flops is None else f"{nonzero_flops:,}"]
        return cells


def sparsity_report(
    model: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor] | None = None
) -> SparsityReport:
    """How sparse each conv/linear layer of ``model`` is.

    Args:
        example_input: when given (a tensor, or a tuple of positional inputs,
            batch included), FLOPs before/after are measured with one forward pass.
    Returns:
        a :class:`SparsityReport`; ``str(report)`` is a table with totals.
    """
    flops = nonzero_flops = {}
    if example_input is not None:
        flops = count_flops(model, example_input, per_layer=True)
        nonzero_flops = count_flops(model, example_input, nonzero=True, per_layer=True)
    rows, seen = [], set()
    for name, mod in model.named_modules():
        if isinstance(mod, PRUNABLE_TYPES) and isinstance(getattr(mod, "weight", None), torch.Tensor):
            weight = mod.weight.detach()
        elif isinstance(mod, SparseLinear):
            weight = mod.dense_weight()
        else:
            continue
        key = id(mod.weight) if not isinstance(mod, SparseLinear) else id(mod.values)
        if key in seen:  # a tied weight is counted once
            continue
        seen.add(key)
        rows.append(LayerSparsity(name, tuple(weight.shape), weight.numel(), int(torch.count_nonzero(weight)),
                                  flops.get(name), nonzero_flops.get(name)))
    return SparsityReport(tuple(rows))
