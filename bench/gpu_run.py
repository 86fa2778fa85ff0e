"""``python -m bench --device cuda``: effdl's CUDA and Triton kernels against cuBLAS, cuSPARSELt, cuDNN.

Measures the ceilings first (bf16 cuBLAS GEMM, ``copy_`` bandwidth), then the
cases of :mod:`bench.gpu_cases` until ``--time-budget`` seconds have passed (the
rest are recorded as skipped), writing the JSON after every case so that a run
killed by an outer timeout still leaves its results. Prints one table per op;
the last line is ``wrote <path>``. Exit status 1 when an effdl candidate gave a
wrong result (a backend that is unavailable or raises is reported, not a failure:
the native CUDA kernels may not be built).
"""

from __future__ import annotations

import datetime
import gc
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

from . import harness
from .gpu_cases import USES, GpuCase, check, gpu_cases, l2_bytes, total_bytes
from .gpu_timing import measure_ceilings, time_interleaved_device
from .harness import Budget

QUICK = Budget(seconds=0.3, min_reps=5, max_case_s=3.0, max_reps=25, sample_s=0.002, warmup_s=0.1)
FULL = Budget(seconds=0.6, min_reps=7, max_case_s=6.0, max_reps=30, sample_s=0.005, warmup_s=0.2)
CEILING = Budget(seconds=1.0, min_reps=5, max_reps=20, sample_s=0.02, warmup_s=0.2)
DEFAULT_TIME_BUDGET_S = 300.0
EFFDL = ("effdl cuda", "effdl triton")
_now = time.perf_counter  # the run's clock for the time budget (a test replaces it)


def require_gpu() -> torch.device:
    """The CUDA device, or ``SystemExit`` with a message saying why there is none."""
    if not torch.cuda.is_available():
        sys.exit(
            f"python -m bench --device cuda needs a CUDA GPU: torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}). "
            "Run the CPU benchmarks without --device, or bench/device_check.sh on a GPU machine."
        )
    return torch.device("cuda", torch.cuda.current_device())


def gpu_info(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    major, minor = torch.cuda.get_device_capability(device)
    info = {
        "gpu": props.name,
        "arch": f"sm_{major}{minor}",
        "sm_count": props.multi_processor_count,
        "memory_bytes": props.total_memory,
        "l2_bytes": l2_bytes(device),
        "cuda_runtime": torch.version.cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpu": harness.cpu_model(),
        "host_cores": harness.cpu_count(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception as exc:  # the Triton candidates will say why they are unavailable
        info["triton"] = f"unavailable ({type(exc).__name__}: {exc})"
    try:
        import effdl

        full = effdl.info()
        info["effdl"] = {k: full.get(k) for k in ("effdl", "native", "built_with_torch", "compiler", "backend")}
        info["effdl"]["build"] = harness.build_info()
    except Exception as exc:
        info["effdl"] = {"error": f"{type(exc).__name__}: {exc}"}
    return info


def gpu_slug(info: dict) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
    return f"cuda-{name}-{info['arch'].replace('_', '')}"


def _skipped(case: GpuCase, why: str) -> dict:
    return {"op": case.op, "case": case.name, "params": case.params, "skipped": why, "candidates": {}}


def untrusted_kernels(validation: dict) -> dict[tuple[str, str], str]:
    """``(family, op) -> reason`` for the effdl kernels that failed a ``cuda`` test on this GPU.

    ``validation`` is the summary ``bench.validate`` writes (``validation.json``). Such a kernel
    is not benchmarked: one illegal memory access would lose the CUDA context for every later case.
    """
    out = {}
    for fam, rows in validation.get("counts", {}).items():
        for op, counts in rows.items():
            if counts.get("failed", 0):
                out[(fam, op)] = (f"not timed: {counts['failed']} of its {fam} kernel's cuda tests failed on "
                                  "this GPU (validation.json)")
    return out


def skips_for(case: GpuCase, untrusted: dict[tuple[str, str], str]) -> dict[str, str]:
    """The effdl candidates of ``case`` not to run: those calling an untrusted kernel."""
    out = {}
    for fam in ("cuda", "triton"):
        for op in USES[case.op]:
            if (fam, op) in untrusted:
                out.setdefault(f"effdl {fam}", untrusted[(fam, op)])
    return out


def cuda_context_error(device: torch.device) -> str | None:
    """``None`` while the CUDA context works; else why not (a sticky error from a faulting kernel)."""
    if device.type != "cuda":
        return None
    try:
        torch.cuda.synchronize(device)
        torch.ones(1, device=device).add_(1).item()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


def run_case(case: GpuCase, device: torch.device, l2: int, budget: Budget, seed: int,
             skip: dict[str, str] | None = None) -> dict:
    """Build, check and time one case (not running the candidates in ``skip``); never raises."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    result: dict = {"op": case.op, "case": case.name, "params": case.params, "flops": case.flops,
                    "work_flops": case.work_flops, "bytes": case.bytes}
    try:
        with torch.inference_mode():
            built = check(case.build(device, l2), skip)
            result["build_s"] = round(time.perf_counter() - t0, 3)
            timings = time_interleaved_device(built.candidates, budget, device)
    except Exception as exc:  # out of memory, a broken reference...: recorded, the run goes on
        result.update(error=f"{type(exc).__name__}: {exc}"[:500], candidates={})
        result["wall_s"] = round(time.perf_counter() - t0, 3)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return result
    by_name = {t.name: t for t in timings}
    result.update(
        n_sets=built.n_sets,
        rotation_bytes=total_bytes(built),
        check={"against": built.ref, "tol": built.tol, "rel_err": built.errors,
               "ok": {n: built.errors[n] <= built.tol for n in EFFDL if n in built.errors}},
        candidates={c.name: {**by_name[c.name].to_json(), "error": c.error or by_name[c.name].error,
                             "note": c.note} for c in built.candidates},
    )
    ratios: dict = {}
    for e in EFFDL:
        te = by_name.get(e)
        if te is None or not te.median_s:
            continue
        ratios[e] = {t.name: t.median_s / te.median_s for t in timings if t.name not in EFFDL and t.median_s}
    result["ratios"] = ratios
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    del built, timings
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def derive(result: dict, ceilings: dict) -> None:
    """Each effdl backend's TFLOP/s, TB/s and distance to the nearer measured ceiling."""
    peak = (ceilings.get("gemm") or {}).get("TFLOPs")
    bw = (ceilings.get("copy") or {}).get("TBps")
    result["achieved"] = {}
    for name, c in result.get("candidates", {}).items():
        med = c.get("median_ms")
        if not med:
            continue
        t = med / 1e3
        tflops, tbps = result["flops"] / t / 1e12, result["bytes"] / t / 1e12
        work = result["work_flops"] / t / 1e12
        pct = max(work / peak if peak else 0.0, tbps / bw if bw else 0.0) * 100
        result["achieved"][name] = {"TFLOPs": tflops, "TBps": tbps, "pct_of_ceiling": pct}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}" if v < 0.1 else f"{v:.3f}"


def format_tables(doc: dict) -> str:
    """One plain-text table per op: effdl's two backends, every peer's time and the ratios."""
    out = []
    results = doc.get("cases", [])
    for op in dict.fromkeys(r["op"] for r in results):
        rows_in = [r for r in results if r["op"] == op]
        peers = list(dict.fromkeys(n for r in rows_in for n in r.get("candidates", {}) if n not in EFFDL))
        headers = ["case", "cuda ms", "triton ms"]
        for p in peers:
            headers += [f"{p} ms", f"{p} / cuda", f"{p} / triton"]
        headers += ["best TFLOP/s", "best TB/s", "%ceil", "check"]
        rows = []
        for r in rows_in:
            if r.get("skipped") or r.get("error"):
                why = "skipped" if r.get("skipped") else "FAILED"
                rows.append([r["case"], why] + ["-"] * (len(headers) - 2))
                continue
            cand = r["candidates"]
            row = [r["case"]]
            for e in EFFDL:
                c = cand.get(e, {})
                row.append("unavailable" if c.get("median_ms") is None else _ms(c["median_ms"]))
            for p in peers:
                c = cand.get(p, {})
                row.append("unavailable" if c.get("median_ms") is None else _ms(c["median_ms"]))
                for e in EFFDL:
                    ratio = r.get("ratios", {}).get(e, {}).get(p)
                    row.append("-" if ratio is None else f"{ratio:.2f}x")
            ach = r.get("achieved", {})
            best = max((ach[e] for e in EFFDL if e in ach), key=lambda a: a["pct_of_ceiling"], default=None)
            row += ["-", "-", "-"] if best is None else [
                f"{best['TFLOPs']:.1f}", f"{best['TBps']:.2f}", f"{best['pct_of_ceiling']:.0f}%"]
            checks = []
            for e in EFFDL:
                ok = r.get("check", {}).get("ok", {}).get(e)
                if ok is not None:
                    checks.append(f"{e.split()[1]}:{'ok' if ok else 'BAD'}")
            row.append(" ".join(checks) or "-")
            rows.append(row)
        out.append(f"## {op}")
        out.append(harness.format_table(headers, rows, right=set(range(1, len(headers) - 1))))
        notes = {}
        for r in rows_in:
            if r.get("error"):
                notes.setdefault(f"FAILED {r['case']}", r["error"])
            if r.get("skipped"):
                notes.setdefault("skipped", r["skipped"])
            for name, c in r.get("candidates", {}).items():
                if c.get("error"):
                    notes.setdefault(f"{name} unavailable", c["error"])
        if notes:
            out.append("  " + "; ".join(f"{k}: {v}" for k, v in notes.items()))
        out.append("")
    return "\n".join(out)


def print_tables(path: str | Path) -> None:
    """Print the tables of a results JSON (used by bench/device_check.sh)."""
    doc = json.loads(Path(path).read_text())
    c = doc.get("ceilings", {})
    gemm, copy = (c.get("gemm") or {}).get("TFLOPs"), (c.get("copy") or {}).get("TBps")
    m = doc.get("machine", {})
    print(f"{m.get('gpu')} ({m.get('arch')}) | torch {m.get('torch')} | triton {m.get('triton')} | {doc.get('date')}")
    print(f"ceilings: bf16 GEMM {gemm and f'{gemm:.0f}'} TFLOP/s, copy {copy and f'{copy:.2f}'} TB/s; "
          "ratio = peer_time / effdl_time (>1: effdl faster)\n")
    print(format_tables(doc))


def main(args) -> int:
    """Run the GPU benchmarks; ``args`` is ``python -m bench``'s namespace (device cuda)."""
    case_list = gpu_cases(args.ops, args.quick)
    if args.filter:
        case_list = [c for c in case_list if args.filter in f"{c.op} {c.name}"]
    if args.list:
        for c in case_list:
            print(f"{c.op:<20} {c.name}")
        return 0
    device = require_gpu()
    budget = QUICK if args.quick else FULL
    deadline = _now() + args.time_budget
    info = gpu_info(device)
    l2 = info["l2_bytes"]
    today = datetime.date.today().isoformat()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{gpu_slug(info)}-{today}{'-quick' if args.quick else ''}.json"
    print(f"# effdl GPU bench on {info['gpu']} ({info['arch']}, L2 {l2 / (1 << 20):.0f} MiB), torch "
          f"{info['torch']}, triton {info['triton']}, {len(case_list)} cases, budget {args.time_budget:.0f} s",
          file=sys.stderr, flush=True)
    doc = {
        "schema": 1, "date": today, "mode": "quick" if args.quick else "full", "device": "cuda",
        "ops": args.ops, "machine": info,
        "method": {
            "timer": "CUDA events around n back-to-back calls per sample, candidates interleaved round-robin",
            "statistic": "median per call over samples (IQR = q3 - q1)",
            "budget": vars(budget),
            "ratio": "peer_time / effdl_backend_time (>1: effdl faster), per effdl backend",
            "rotation": "each candidate cycles over n_sets weight/input sets totalling >= 2x L2 (1 set when larger)",
            "TFLOPs": "dense-equivalent 2*M*N*K (nm_linear: the dense matmul it replaces)",
            "pct_of_ceiling": "max(work_flops/s / bf16 cuBLAS GEMM, bytes/s / copy_ bandwidth)",
            "launch": "eager calls: the times include the host-side launch cost of each candidate",
        },
        "ceilings": {}, "cases": [],
    }
    t_start = _now()
    try:
        doc["ceilings"] = measure_ceilings(device, CEILING, args.quick)
    except Exception as exc:  # the cases still run; %ceil stays empty
        doc["ceilings"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    c = doc["ceilings"]
    print(f"# ceilings: {json.dumps({k: v.get('TFLOPs') or v.get('TBps') for k, v in c.items() if isinstance(v, dict)})}",
          file=sys.stderr, flush=True)
    untrusted = {}
    if getattr(args, "validation", None):
        try:
            untrusted = untrusted_kernels(json.loads(Path(args.validation).read_text()))
        except (OSError, ValueError) as exc:
            print(f"# --validation {args.validation} unreadable ({exc}): every kernel is timed", file=sys.stderr)
    doc["untrusted_kernels"] = {f"{fam} {op}": why for (fam, op), why in untrusted.items()}
    lost = None
    for i, case in enumerate(case_list):
        if lost:
            r = _skipped(case, lost)
        elif _now() > deadline:
            r = _skipped(case, f"time budget of {args.time_budget:.0f} s spent")
        else:
            r = run_case(case, device, l2, budget, args.seed + i, skips_for(case, untrusted))
            derive(r, doc["ceilings"])
            why = cuda_context_error(device)
            if why:
                lost = f"the CUDA context was lost during {case.op} {case.name}: {why}"
        doc["cases"].append(r)
        doc["total_s"] = round(_now() - t_start, 1)
        path.write_text(json.dumps(doc, indent=1) + "\n")  # after every case: a killed run keeps its results
        meds = {n: v.get("median_ms") for n, v in r.get("candidates", {}).items()}
        print(f"[{i + 1}/{len(case_list)}] {case.op} {case.name}: "
              f"{r.get('skipped') or r.get('error') or meds} ({r.get('wall_s', 0)} s)", file=sys.stderr, flush=True)
    print_tables(path)
    bad = [f"{r['op']} {r['case']} ({name})" for r in doc["cases"]
           for name, ok in r.get("check", {}).get("ok", {}).items() if not ok]
    print(f"total {doc.get('total_s', 0):.1f} s")
    if bad:
        print(f"effdl gave wrong results in {len(bad)} candidate(s): {'; '.join(bad)}")
    print(f"wrote {path}")
    return 1 if bad else 0
