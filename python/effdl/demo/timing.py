"""Latency of several models measured side by side, in one process, interleaved.

Within each repetition every model runs once, in turn, so that whatever else the
machine does at that moment (turbo, other processes) affects them all alike;
the median over repetitions is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def time_interleaved(models: dict[str, nn.Module], x: torch.Tensor, reps: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds of ``model(x)`` for every model (eval mode, inference mode)."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    times: dict[str, list[float]] = {name: [] for name in models}
    # a GPU runs asynchronously: wait for the work before reading the clock
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for model in models.values():
            for _ in range(warmup):
                model(x)
        for _ in range(reps):
            for name, model in models.items():
                sync()
                t0 = time.perf_counter()
                model(x)
                sync()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def latency_table(models: dict[str, nn.Module], example: torch.Tensor, batch_sizes: tuple[int, ...], reps: int,
                  advance: Callable[[str], None] | None = None) -> dict[str, dict[int, float]]:
    """``{model name: {batch size: median ms}}``; inputs are real test images, channels_last."""
    out: dict[str, dict[int, float]] = {name: {} for name in models}
    for bs in batch_sizes:
        idx = torch.arange(bs) % len(example)
        x = example[idx].contiguous(memory_format=torch.channels_last)
        # fewer repetitions for the large batches: each takes longer and varies less
        got = time_interleaved(models, x, reps=max(min(reps, 10), reps * 16 // max(bs, 16)))
        for name, ms in got.items():
            out[name][bs] = ms
        if advance is not None:
            advance(f"batch {bs}")
    return out
