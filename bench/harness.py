"""Benchmark utilities: machine info, background-load probe, ceilings, output check, tables.

The timer itself (interleaved medians, cache-defeating rotation) lives in
``effdl.plan.timing``, shared with ``effdl plan``, and is re-exported here. The rules (DESIGN.md §6): every candidate of a case is timed in the same process
and *interleaved* — each repetition takes one sample of every candidate, in a
round-robin order whose starting point rotates — so that a burst of noise from
another process on a shared machine lands on all of them alike. Each candidate
rotates over several weight/input sets whose total size exceeds the last-level
cache, so a call never finds its weights warm from the previous one. Warm-up
comes first; the reported figure is the median of the samples (plus the IQR).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from effdl.plan.timing import (  # noqa: F401  (re-exported: the benchmarks' timing API)
    DEFAULT_LLC,
    MAX_SETS,
    Budget,
    Candidate,
    MiB,
    Timing,
    first_outputs,
    llc_bytes,
    rotation_sets,
    time_interleaved,
)

# ---------------------------------------------------------------- machine


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


# ---------------------------------------------------------------- ceilings


PEAK_KINDS = {
    "fp32_fma": "fp32 FMA peak (register-only vfmadd loop, every thread)",
    "int8_dot": "int8 dot peak (register-only vpdpbusd loop, or vpmaddubsw+vpmaddwd without VNNI)",
    "bf16_dot": "bf16 dot peak (register-only vdpbf16ps loop; AVX512-BF16 only)",
}


def measure_peaks(seconds: float) -> dict:
    """The compute ceilings of the cores torch uses (ops/s; a multiply-add is 2), from
    register-only loops in ``effdl._C`` at the CPU kernel level in use; kinds the level
    has no instruction for are left out."""
    from effdl import _ext

    out = {}
    for kind, label in PEAK_KINDS.items():
        rate = _ext.cpu_peak_rate(kind, seconds)
        if rate is not None:
            out[kind] = {"label": label, "GOPs": rate / 1e9}
    return out


def measure_ceilings(llc: int, budget: Budget, quick: bool) -> dict:
    """Streaming-copy bandwidth, the MKL fp32 GEMM rate and the instruction peaks, measured here and now."""
    out: dict = {"peaks": measure_peaks(0.05 if quick else 0.3)}
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
