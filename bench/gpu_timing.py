"""GPU timing: interleaved medians measured with CUDA events, and the measured ceilings.

The rules are those of the CPU timer (``effdl.plan.timing``): every candidate of a
case is sampled round-robin with a rotating starting point, each candidate cycles
over its rotation sets, warm-up comes first, the figure is the median per call.
On a GPU a sample is ``n`` back-to-back calls between two CUDA events (launches
are asynchronous, so host timers would measure the launch queue); the event pair
is synchronized before the next sample. On a CPU device (the tests of the
builders) the same code uses ``time.perf_counter``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from effdl.plan.timing import sample_round_robin

from .harness import Budget, Candidate, Timing

MiB = 1 << 20


class _Clock:
    """Elapsed seconds of a block of work on ``device``: CUDA events there, else the host clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        if self.cuda:
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self._end.record()
            self._end.synchronize()
            return self._start.elapsed_time(self._end) / 1e3
        return time.perf_counter() - self._t0


def time_interleaved_device(candidates: Sequence[Candidate], budget: Budget, device: torch.device) -> list[Timing]:
    """Median/IQR per call of every available candidate on ``device``, sampled round-robin."""
    clock = _Clock(device)
    live = [c for c in candidates if c.error is None]
    timings = {c.name: Timing(c.name, error=c.error) for c in candidates}
    cursor = dict.fromkeys((c.name for c in live), 0)
    per_sample: dict[str, int] = {}

    def run(c: Candidate, n: int) -> float:
        i, calls = cursor[c.name], c.calls
        clock.start()
        for _ in range(n):
            calls[i]()
            i += 1
            if i == len(calls):
                i = 0
        dt = clock.stop()
        cursor[c.name] = i
        return dt

    rep_s = 0.0
    for c in live:  # warm-up: one full rotation (first-call compilation, autotuning), then an estimate
        try:
            t0 = time.perf_counter()
            run(c, len(c.calls))
            est = [run(c, 1)]
            while time.perf_counter() - t0 < budget.warmup_s and len(est) < 50:
                est.append(run(c, 1))
            per_call = statistics.median(est)
            per_sample[c.name] = max(1, min(10_000, round(budget.sample_s / max(per_call, 1e-9))))
            rep_s += max(per_call, budget.sample_s)
        except Exception as exc:  # a candidate that breaks is reported, the others still run
            timings[c.name].error = f"{type(exc).__name__}: {exc}"[:300]
    live = [c for c in live if timings[c.name].error is None]
    sample_round_robin(live, per_sample, run, budget, rep_s, timings)
    return [timings[c.name] for c in candidates]


def measure_ceilings(
    device: torch.device, budget: Budget, quick: bool, gemm_size: int | None = None, copy_mib: int | None = None
) -> dict:
    """What this GPU does here and now: bf16 cuBLAS GEMM rate and ``copy_`` bandwidth (read + write).

    The GEMM is ``F.linear`` of two ``gemm_size``-square bf16 matrices (8192; 4096 with ``quick``),
    the copy moves ``copy_mib`` MiB (2048, far above any L2; 256 with ``quick``) each way.
    """
    out: dict = {}
    with torch.inference_mode():
        s = gemm_size or (4096 if quick else 8192)
        a = torch.randn(s, s, device=device).bfloat16()
        bs = [torch.randn(s, s, device=device).bfloat16() for _ in range(2)]
        (t,) = time_interleaved_device([Candidate("gemm", [lambda a=a, b=b: F.linear(a, b) for b in bs])], budget, device)
        out["gemm"] = {
            "label": f"cuBLAS bf16 GEMM (F.linear {s}^3; practical, not datasheet, peak)",
            "flops": 2 * s**3,
            "timing": t.to_json(),
            "TFLOPs": 2 * s**3 / t.median_s / 1e12 if t.median_s else None,
        }
        del a, bs
        nbytes = (copy_mib or (256 if quick else 2048)) * MiB
        src = torch.rand(nbytes // 4, device=device)
        dst = torch.empty_like(src)
        (t,) = time_interleaved_device([Candidate("copy", [lambda d=dst, s=src: d.copy_(s)])], budget, device)
        out["copy"] = {
            "label": f"copy_ of {nbytes // MiB} MiB (read + write)",
            "bytes": 2 * nbytes,
            "timing": t.to_json(),
            "TBps": 2 * nbytes / t.median_s / 1e12 if t.median_s else None,
        }
        del src, dst
    return out
