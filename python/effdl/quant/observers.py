"""Observers: modules that watch tensors flow by and decide the quantization range.

Every observer's ``forward(x)`` records statistics of ``x`` and returns ``x``
unchanged; :meth:`Observer.qparams` turns what was seen into :class:`QParams` for
its scheme (bits, symmetry, per tensor or per channel). The state lives in
buffers (``min_val``, ``max_val``: 0-dim per tensor or ``[C]`` per channel, empty
until the first batch; ``num_batches``), so it is saved in ``state_dict`` and, under
``DistributedDataParallel``, broadcast from rank 0 like BatchNorm's statistics.

* :class:`MinMaxObserver`: the running min and max of everything seen.
* :class:`MovingAverageMinMaxObserver`: exponential moving average of each batch's min and max.
* :class:`PercentileObserver`: each batch's (100 - p)-th / p-th percentiles, averaged over batches.
* :class:`MSEObserver`: each batch's clipping range that minimizes the quantization MSE, averaged.

The percentile and MSE observers estimate from a random sample of at most
``max_samples`` elements per batch, so they cost the same on any tensor size; the
sample is drawn from a generator seeded by the batch count, so it is
deterministic and identical on every rank.
"""

from __future__ import annotations

import torch
from torch import nn

from effdl.quant.scheme import QParams, QScheme, channel_rows, qparams_from_range


class Observer(nn.Module):
    """Base class: validates the input, computes each batch's per-channel range
    with :meth:`batch_range` and merges it into the buffers with :meth:`combine`."""

    def __init__(self, num_bits: int = 8, symmetric: bool = False, axis: int | None = None) -> None:
        super().__init__()
        self.scheme = QScheme(num_bits, symmetric, axis)
        self.register_buffer("min_val", torch.empty(0))
        self.register_buffer("max_val", torch.empty(0))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.int64))

    # -- what subclasses define
    def batch_range(self, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The range to record for one batch, given its rows ``[C, N]`` and their min/max ``[C]``."""
        return lo, hi

    def combine(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Merge a batch's range into the recorded one (called only once a batch was recorded);
        the default is the running mean over batches."""
        n = self.num_batches.to(lo.dtype)
        return self.min_val + (lo - self.min_val) / (n + 1), self.max_val + (hi - self.max_val) / (n + 1)

    # -- the shared machinery
    @property
    def has_data(self) -> bool:
        return bool(self.num_batches > 0)

    def reset(self) -> None:
        """Forget everything seen (the buffers keep their shape)."""
        self.num_batches.zero_()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        where = type(self).__name__
        if not x.is_floating_point():
            raise ValueError(f"{where}: expected a floating-point tensor, got {x.dtype}")
        if x.numel() == 0:
            raise ValueError(f"{where}: got an empty tensor (shape {list(x.shape)}); there is no range to observe")
        rows = channel_rows(x, self.scheme)
        lo, hi = rows.amin(1), rows.amax(1)
        if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
            raise ValueError(f"{where}: the observed tensor holds NaN or Inf")
        if self.has_data and self.min_val.numel() != lo.numel() and self.scheme.axis is not None:
            raise ValueError(f"{where}: saw {self.min_val.numel()} channels along axis {self.scheme.axis} before, "
                             f"now {lo.numel()}")
        lo, hi = self.batch_range(rows, lo, hi)
        if self.scheme.axis is None:
            lo, hi = lo[0], hi[0]
        if self.has_data:
            lo, hi = self.combine(lo.to(self.min_val.dtype), hi.to(self.max_val.dtype))
        # assigned, not copied: the first batch fixes the shape (and DDP re-reads buffers every step)
        self.min_val, self.max_val = lo.clone(), hi.clone()
        self.num_batches += 1
        return x

    def qparams(self) -> QParams:
        """Scale and min (the real value of ``q = 0``) for the recorded range:
        0-dim per tensor, ``[C]`` per channel. Raises if nothing was observed."""
        if not self.has_data:
            raise RuntimeError(f"{type(self).__name__}: no data observed yet; run calibration batches "
                               "(or a training step) through the model first")
        return qparams_from_range(self.min_val, self.max_val, self.scheme)

    def _apply(self, fn, recurse=True):
        # .half() / .to(bfloat16) of the model must not round the recorded ranges:
        # they stay float32 (float64 stays float64), only their device follows
        keep = {name: getattr(self, name) for name in ("min_val", "max_val")}
        super()._apply(fn, recurse)
        for name, original in keep.items():
            moved = getattr(self, name)
            if moved.dtype != original.dtype and original.dtype in (torch.float32, torch.float64):
                setattr(self, name, original.to(moved.device))
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the range buffers are sized by the first batch: take the saved shapes
        for name in ("min_val", "max_val"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return self.scheme.describe()


class MinMaxObserver(Observer):
    """The running minimum and maximum of every tensor seen."""

    def combine(self, lo, hi):
        return torch.minimum(self.min_val, lo), torch.maximum(self.max_val, hi)


class MovingAverageMinMaxObserver(Observer):
    """``min <- min + c * (batch_min - min)`` (same for max), the first batch taken as is.

    Follows the drifting activations of a network in training (QAT)."""

    def __init__(self, num_bits: int = 8, symmetric: bool = False, axis: int | None = None,
                 averaging_constant: float = 0.01) -> None:
        super().__init__(num_bits, symmetric, axis)
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = averaging_constant

    def combine(self, lo, hi):
        c = self.averaging_constant
        return self.min_val + c * (lo - self.min_val), self.max_val + c * (hi - self.max_val)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, averaging_constant={self.averaging_constant}"


def _sample_rows(rows: torch.Tensor, max_samples: int, seed: int) -> torch.Tensor:
    """At most ``max(max_samples // C, 4096)`` elements of each row, drawn uniformly
    with replacement from a generator seeded by ``seed`` (all rows when they are short)."""
    per_row = max(max_samples // rows.shape[0], 4096)
    if rows.shape[1] <= per_row:
        return rows
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(rows.shape[1], (rows.shape[0], per_row), generator=gen).to(rows.device)
    return rows.gather(1, idx)


def _quantile(sorted_rows: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile (0..1) of each sorted row with linear interpolation (as ``torch.quantile``)."""
    pos = q * (sorted_rows.shape[1] - 1)
    below = int(pos)
    above = min(below + 1, sorted_rows.shape[1] - 1)
    frac = pos - below
    return sorted_rows[:, below] + frac * (sorted_rows[:, above] - sorted_rows[:, below])


class PercentileObserver(Observer):
    """Clip to percentiles: each batch records its ``(100 - percentile)``-th and
    ``percentile``-th percentiles (of ``|x|`` for symmetric schemes), and the
    recorded range is their mean over batches. Outliers beyond the percentile
    are clipped instead of stretching the grid."""

    def __init__(self, num_bits: int = 8, symmetric: bool = False, axis: int | None = None,
                 percentile: float = 99.99, max_samples: int = 2**20) -> None:
        super().__init__(num_bits, symmetric, axis)
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        self.percentile, self.max_samples = percentile, max_samples

    def batch_range(self, rows, lo, hi):
        sample = _sample_rows(rows, self.max_samples, int(self.num_batches))
        p = self.percentile / 100.0
        if self.scheme.symmetric:
            top = _quantile(sample.abs().sort(1).values, p)
            return -top, top
        ordered = sample.sort(1).values
        return _quantile(ordered, 1.0 - p), _quantile(ordered, p)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, percentile={self.percentile}"


class MSEObserver(Observer):
    """Search the clipping range that minimizes ``mean((x - fake_quant(x))^2)``.

    Candidates shrink the batch's ``[min, max]`` towards zero by ratios
    ``1/grid, 2/grid, ..., 1`` (``[r*min, r*max]`` when the range contains zero,
    otherwise the end nearer zero stays put); the best candidate of each batch
    (per channel) is recorded and averaged over batches. Trades clipping error on
    a few outliers against rounding error on everything else."""

    def __init__(self, num_bits: int = 8, symmetric: bool = False, axis: int | None = None,
                 grid: int = 100, max_samples: int = 2**15) -> None:
        super().__init__(num_bits, symmetric, axis)
        if grid < 1:
            raise ValueError(f"grid must be a positive number of candidates, got {grid}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        self.grid, self.max_samples = grid, max_samples

    def batch_range(self, rows, lo, hi):
        sample = _sample_rows(rows, self.max_samples, int(self.num_batches))
        if self.scheme.symmetric:  # the grid spans [-max|x|, max|x|]: shrink that
            hi = torch.maximum(lo.abs(), hi.abs())
            lo = -hi
        anchor = torch.minimum(torch.maximum(torch.zeros_like(lo), lo), hi)  # the point of [lo, hi] nearest 0
        best_err = torch.full_like(lo, float("inf"))
        best_lo, best_hi = lo.clone(), hi.clone()
        per_channel = QScheme(self.scheme.num_bits, self.scheme.symmetric, axis=0)
        qmin, qmax = per_channel.qmin, per_channel.qmax
        for k in range(1, self.grid + 1):
            r = k / self.grid
            c_lo, c_hi = anchor + r * (lo - anchor), anchor + r * (hi - anchor)
            qp = qparams_from_range(c_lo, c_hi, per_channel)
            scale, offset = qp.scale[:, None], qp.min_val[:, None]
            # quantize -> dequantize in float (the same arithmetic as QParams, without the integer cast)
            approx = torch.round((sample - offset) / scale).clamp_(qmin, qmax).mul_(scale).add_(offset)
            err = (approx - sample).square_().mean(1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo, best_hi = torch.where(better, c_lo, best_lo), torch.where(better, c_hi, best_hi)
        return best_lo, best_hi

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, grid={self.grid}"
