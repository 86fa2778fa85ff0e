"""Timing utilities: interleaved medians, cache-defeating rotation, ceilings, machine info.

The rules (DESIGN.md §6): every candidate of a case is timed in the same process
and *interleaved* — each repetition takes one sample of every candidate, in a
round-robin order whose starting point rotates — so that a burst of noise from
another process on a shared machine lands on all of them alike. Each candidate
rotates over several weight/input sets whose total size exceeds the last-level
cache, so a call never finds its weights warm from the previous one. Warm-up
comes first; the reported figure is the median of the samples (plus the IQR).
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

MiB = 1 << 20
DEFAULT_LLC = 32 * MiB
MAX_SETS = 256  # bound on the rotation length (memory and set-up time)


# ---------------------------------------------------------------- machine


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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    except (OSError, ValueError):
        return None


def machine_slug() -> str:
    """A hostname-free name for the results file, e.g. ``cpu-x86_64-2c``."""
    return f"cpu-{platform.machine() or 'unknown'}-{cpu_count()}c"


def build_info() -> dict:
    """Which effdl build is timed: the ``_C`` file's mtime, the repository HEAD and local source changes.

    Other people rebuild the extension in place; a result is only meaningful with its build. HEAD is
    what the checkout holds when the run starts, which need not be what ``_C`` was built from.
    """
    out: dict = {}
    root = Path(__file__).resolve().parent.parent
    try:
        import effdl._ext as ext

        so = Path(ext.C.__file__) if ext.C is not None else None
        out["ext_file"] = so.name if so else None
        out["ext_mtime"] = so.stat().st_mtime if so else None
    except Exception:  # reported as missing, never fatal
        out["ext_file"] = out["ext_mtime"] = None
    try:
        git = ["git", "-C", str(root)]
        out["repo_head"] = (
            subprocess.run(
                [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "csrc", "python", "setup.py"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        out["local_changes"] = sorted({line[3:] for line in status.splitlines()})
    except (OSError, subprocess.SubprocessError):
        out["repo_head"], out["local_changes"] = None, None
    return out


def machine_info(threads: int) -> dict:
    info: dict = {
        "slug": machine_slug(),
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "cores": cpu_count(),
        "threads": threads,
        "llc_bytes": llc_bytes(),
        "llc_source": "sysfs index3"
        if os.path.exists("/sys/devices/system/cpu/cpu0/cache/index3/size")
        else "assumed 32 MiB",
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "quantized_engine": torch.backends.quantized.engine,
        "loadavg_start": loadavg(),
    }
    try:
        import effdl

        full = effdl.info()
        keys = (
            "effdl",
            "native",
            "built_with_torch",
            "compiler",
            "cpu_features",
            "cpu_kernel_isa",
            "cpu_kernel_isa_forced",
            "backend",
        )
        info["effdl"] = {k: full.get(k) for k in keys}
        info["effdl"]["cpu_backends"] = {op: row["cpu"] for op, row in full.get("ops", {}).items()}
        info["effdl"]["build"] = build_info()
    except Exception as exc:  # the bench still reports the peers if effdl is broken
        info["effdl"] = {"error": f"{type(exc).__name__}: {exc}"}
    return info


class ForeignLoad:
    """Cores kept busy by *other* processes (and the hypervisor's steal) between start() and stop().

    The machine is shared: a case timed while a compiler runs on the other core is
    worth less, and with 2 threads on 2 cores one descheduled OpenMP thread stalls
    the whole op. Read from /proc/stat minus this process's own CPU time.
    """

    def __init__(self) -> None:
        self.start()

    @staticmethod
    def _busy_s() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        t = os.times()
        self._t = (time.perf_counter(), self._busy_s(), t.user + t.system)

    def stop(self) -> float | None:
        wall0, busy0, own0 = self._t
        busy1, t = self._busy_s(), os.times()
        wall = time.perf_counter() - wall0
        if busy0 is None or busy1 is None or wall <= 0:
            return None
        return max(0.0, ((busy1 - busy0) - (t.user + t.system - own0)) / wall)


# ---------------------------------------------------------------- rotation


def rotation_sets(bytes_per_set: int, llc: int, factor: float = 2.0, minimum: int = 2) -> int:
    """How many distinct weight/input sets make ``factor * llc`` bytes (bounded by :data:`MAX_SETS`).

    ``bytes_per_set`` should be the *smallest* candidate's per-set footprint, so that
    every candidate's rotation outgrows the cache.
    """
    return max(minimum, min(MAX_SETS, math.ceil(factor * llc / max(1, bytes_per_set))))


# ---------------------------------------------------------------- timing


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
    return [timings[c.name] for c in candidates]


# ---------------------------------------------------------------- ceilings


def measure_ceilings(llc: int, budget: Budget, quick: bool) -> dict:
    """Streaming-copy bandwidth and the MKL fp32 GEMM rate, measured here and now."""
    out: dict = {}
    with torch.inference_mode():
        # copy: two buffers each >= 4x the LLC; bytes moved = read + write
        nbytes = max(8 * llc, 256 * MiB) if not quick else max(4 * llc, 128 * MiB)
        n = nbytes // 4
        src = torch.rand(n)
        dst = torch.empty_like(src)
        (t,) = time_interleaved([Candidate("copy", [lambda s=src, d=dst: d.copy_(s)])], budget)
        out["copy"] = {
            "label": "stream copy (torch copy_, read+write)",
            "bytes": 2 * nbytes,
            "timing": t.to_json(),
            "GBps": 2 * nbytes / t.median_s / 1e9,
        }
        del src, dst
        # GEMM: y[2048, 2048] = x @ w.T, w rotated over two sets (each 16 MiB)
        s = 2048
        x = torch.randn(s, s)
        ws = [torch.randn(s, s) for _ in range(2)]
        (t,) = time_interleaved([Candidate("gemm", [lambda w=w: F.linear(x, w) for w in ws])], budget)
        out["gemm"] = {
            "label": "MKL fp32 GEMM (F.linear 2048^3; practical, not theoretical, peak)",
            "flops": 2 * s**3,
            "timing": t.to_json(),
            "GFLOPs": 2 * s**3 / t.median_s / 1e9,
        }
    return out


# ---------------------------------------------------------------- accuracy guard


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64 (a guard against timing garbage)."""
    a, b = out.double(), ref.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# ---------------------------------------------------------------- text table


def format_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain-text (also Markdown-valid) table; columns in ``right`` are right-aligned."""
    right = right if right is not None else set(range(2, len(headers)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
