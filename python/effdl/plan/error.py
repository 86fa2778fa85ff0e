"""Output error of a converted layer: signal-to-quantization-noise ratio in dB."""

from __future__ import annotations

import math

import torch

MAX_SQNR_DB = 200.0  # an exact (or fp-rounding-only) output: capped so that the plan stays plain JSON


def sqnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``10 * log10(||ref||^2 / ||out - ref||^2)`` in float64, capped at :data:`MAX_SQNR_DB`.

    ``out`` and ``ref`` are tensors of the same shape (any dtype, any device). 30 dB
    means the error has 1/1000 of the output's energy; higher is better.
    """
    if not isinstance(out, torch.Tensor) or not isinstance(ref, torch.Tensor):
        raise ValueError(f"sqnr_db: out and ref must be tensors, got {type(out).__name__} and {type(ref).__name__}")
    if out.shape != ref.shape:
        raise ValueError(f"sqnr_db: out and ref must have the same shape, got {list(out.shape)} and {list(ref.shape)}")
    out, ref = out.detach().double(), ref.detach().double()
    signal = float(ref.pow(2).sum())
    noise = float((out - ref).pow(2).sum())
    if math.isnan(noise):
        return -MAX_SQNR_DB
    if noise == 0.0:
        return MAX_SQNR_DB
    if signal == 0.0:
        return -MAX_SQNR_DB
    return max(-MAX_SQNR_DB, min(MAX_SQNR_DB, 10.0 * math.log10(signal / noise)))
