"""Interleaved micro-benchmark timing: the one timer of the repository.

Used by ``effdl.plan`` (per-layer latencies on the real input shapes) and by the
``bench/`` microbenchmarks. The rules (DESIGN.md §6): every candidate is timed in
the same process and *interleaved* — each repetition takes one sample of every
candidate, in a round-robin order whose starting point rotates — so that a burst
of noise from another process on a shared machine lands on all of them alike.
A candidate may rotate over several weight/input sets (``calls[i]`` runs set
``i``) so that a call never finds its weights warm from the previous one.
Warm-up comes first; the reported figure is the median of the samples (plus the IQR).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MiB = 1 << 20
DEFAULT_LLC = 32 * MiB
MAX_SETS = 256  # bound on the rotation length (memory and set-up time)


def llc_bytes() -> int:
    """Last-level cache size from sysfs (``index3``), else 32 MiB."""
    path = "/sys/devices/system/cpu/cpu0/cache/index3/size"
    try:
        text = open(path).read().strip().upper()
    except OSError:
        return DEFAULT_LLC
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except ValueError:
        return DEFAULT_LLC


def rotation_sets(bytes_per_set: int, llc: int, factor: float = 2.0, minimum: int = 2) -> int:
    """How many distinct weight/input sets make ``factor * llc`` bytes (bounded by :data:`MAX_SETS`).

    ``bytes_per_set`` should be the *smallest* candidate's per-set footprint, so that
    every candidate's rotation outgrows the cache.
    """
    return max(minimum, min(MAX_SETS, math.ceil(factor * llc / max(1, bytes_per_set))))


@dataclass
class Candidate:
    """One implementation of a case: ``calls[i]()`` runs it on rotation set ``i``."""

    name: str
    calls: Sequence[Callable[[], object]] = ()
    error: str | None = None  # set when the peer is unavailable: reported, never timed
    note: str = ""
    first_call_s: float | None = None  # set by first_outputs(): that call was the first-call warm-up


def first_outputs(candidates: Sequence[Candidate]) -> dict[str, object]:
    """Run every available candidate once on set 0 (for the output check), timing that first call."""
    outs = {}
    for c in candidates:
        if c.error is None:
            t0 = time.perf_counter()
            outs[c.name] = c.calls[0]()
            c.first_call_s = time.perf_counter() - t0
    return outs


@dataclass
class Timing:
    name: str
    median_s: float | None = None
    q1_s: float | None = None
    q3_s: float | None = None
    min_s: float | None = None
    samples: int = 0
    calls_per_sample: int = 0
    samples_s: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def iqr_s(self) -> float | None:
        return None if self.q1_s is None else self.q3_s - self.q1_s

    def to_json(self) -> dict:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1e3, 6)

        return {
            "median_ms": ms(self.median_s),
            "q1_ms": ms(self.q1_s),
            "q3_ms": ms(self.q3_s),
            "iqr_ms": ms(self.iqr_s),
            "min_ms": ms(self.min_s),
            "samples": self.samples,
            "calls_per_sample": self.calls_per_sample,
            "error": self.error,
        }


@dataclass
class Budget:
    """How long to time one case."""

    seconds: float = 4.0  # stop after this once min_reps are done
    min_reps: int = 7
    max_case_s: float = 30.0  # cases whose calls take seconds: fewer reps (never under 3) to stay near this
    max_reps: int = 60
    sample_s: float = 0.004  # a sample repeats calls until it lasts about this long
    warmup_s: float = 0.5  # warm-up time per candidate (at least one call, at most a full rotation)


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def sample_round_robin(
    live: Sequence[Candidate],
    per_sample: dict[str, int],
    run: Callable[[Candidate, int], float],
    budget: Budget,
    rep_s: float,
    timings: dict[str, Timing],
) -> None:
    """The measurement after warm-up, shared by every timer of the repository.

    Each repetition takes one sample (``run(c, per_sample[c])`` seconds for that
    many calls) of every candidate in ``live``, starting one candidate further
    each time, until ``budget`` is spent (at least ``min_reps``, fewer when a
    repetition — ``rep_s`` estimated seconds — is long); the garbage collector is
    off meanwhile. Fills ``timings[c.name]`` with the per-call median/IQR.
    """
    min_reps = max(3, min(budget.min_reps, int(budget.max_case_s / max(rep_s, 1e-9))))
    samples: dict[str, list[float]] = {c.name: [] for c in live}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t_begin = time.perf_counter()
        for rep in range(budget.max_reps):
            for k in range(len(live)):
                c = live[(rep + k) % len(live)]
                n = per_sample[c.name]
                samples[c.name].append(run(c, n) / n)
            if rep + 1 >= min_reps and time.perf_counter() - t_begin >= budget.seconds:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    for c in live:
        xs = samples[c.name]
        q1, med, q3 = _quartiles(xs)
        timings[c.name] = Timing(c.name, med, q1, q3, min(xs), len(xs), per_sample[c.name], xs)


def time_interleaved(candidates: Sequence[Candidate], budget: Budget) -> list[Timing]:
    """Median/IQR per call of every available candidate, sampled round-robin.

    A candidate that already ran once (``first_call_s``, from :func:`first_outputs`)
    skips that first warm-up call, and skips the rest of the warm-up when that call
    alone outlasted it: it matters for peers whose calls take seconds.
    """
    live = [c for c in candidates if c.error is None]
    timings = {c.name: Timing(c.name, error=c.error) for c in candidates}
    cursor = dict.fromkeys((c.name for c in live), 0)
    per_sample: dict[str, int] = dict.fromkeys(cursor, 1)
    rep_s = 0.0  # estimated seconds per repetition (one sample of every candidate)

    def run(c: Candidate, n: int) -> float:
        i, calls = cursor[c.name], c.calls
        t0 = time.perf_counter()
        for _ in range(n):
            calls[i]()
            i += 1
            if i == len(calls):
                i = 0
        dt = time.perf_counter() - t0
        cursor[c.name] = i
        if n > 1 and dt > 3 * budget.sample_s:  # calibrated in a quiet moment: shrink, keep samples short
            per_sample[c.name] = max(1, round(n * budget.sample_s / dt))
        return dt

    for c in live:  # warm-up: first-call set-up (packing, primitive caches), then an estimate
        try:
            t_start = time.perf_counter()
            if c.first_call_s is None:
                c.calls[0]()
            cursor[c.name] = 1 % len(c.calls)
            if c.first_call_s is not None and c.first_call_s > budget.warmup_s:
                per_call = c.first_call_s
            else:
                est = [run(c, 1)]
                while len(est) < len(c.calls) and time.perf_counter() - t_start < budget.warmup_s:
                    est.append(run(c, 1))
                per_call = statistics.median(est[1:] or est)
            per_sample[c.name] = max(1, min(100_000, round(budget.sample_s / max(per_call, 1e-9))))
            rep_s += max(per_call, budget.sample_s)
        except Exception as exc:  # a peer that breaks is reported, the others still run
            timings[c.name].error = f"{type(exc).__name__}: {exc}"[:300]
    live = [c for c in live if timings[c.name].error is None]
    sample_round_robin(live, per_sample, run, budget, rep_s, timings)
    return [timings[c.name] for c in candidates]
