"""``python -m bench``: CPU microbenchmarks of the effdl kernels against their PyTorch peers.

    python -m bench [--quick] [--ops nm_linear,int8_linear,...] [--out bench/results] [--threads N]
    python -m bench --device cuda [--quick] [--time-budget S] [--validation V.json] [--ops ...]  (bench/gpu_run.py)

Prints one plain-text table per op on stdout (progress goes to stderr), writes
``<out>/<machine>[-<threads>t]-<YYYY-MM-DD>[-quick].json`` and prints ``wrote <path>``
as the last line. Exit status 1 when an effdl kernel failed or gave a wrong result.
Method and results: bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import sys
import time
from pathlib import Path

import torch

from . import gpu_cases, gpu_run, harness
from .cases import OPS, Case, cases
from .harness import Budget

QUICK = Budget(seconds=0.5, min_reps=5, max_case_s=3.0, max_reps=25, sample_s=0.002, warmup_s=0.1)
FULL = Budget(seconds=3.0, min_reps=5, max_case_s=20.0, max_reps=60, sample_s=0.005, warmup_s=0.4)
CEILING_QUICK = Budget(seconds=0.5, min_reps=3, max_reps=10, sample_s=0.0, warmup_s=0.0)
CEILING_FULL = Budget(seconds=2.0, min_reps=7, max_reps=30, sample_s=0.0, warmup_s=0.2)

NOISY_BG = 0.3  # cores busy with other processes above which a full run re-times a case
MAX_ATTEMPTS = 4
RETRY_UNTIL_S = 720.0  # retries stop 12 minutes into a full run

last_written: Path | None = None  # the JSON the last main() wrote (effdl bench plots it)

SHORT = {  # table headers for the peers; the legend under each table gives the full names
    "F.linear fp32": "fp32",
    "F.linear bf16": "bf16",
    "torch.ao dyn int8": "ao-int8",
    "effdl int8 dense": "int8-dense",
    "effdl int8 packed": "int8-packed",
    "_weight_int8pack_mm": "int8pack",
    "torch CL (oneDNN)": "oneDNN-CL",
    "torch NCHW": "NCHW",
    "torch reference": "torch-ref",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few shapes, short budgets (< 2 min): the smoke test")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu (default): the CPU kernels; cuda: the CUDA and Triton kernels vs cuBLAS/cuDNN (needs a GPU)",
    )
    p.add_argument(
        "--ops",
        default=None,
        help=f"comma-separated subset of: {','.join(OPS)} (cuda: {','.join(gpu_cases.OPS)}); default all",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=gpu_run.DEFAULT_TIME_BUDGET_S,
        help="cuda only: seconds after which the remaining cases are recorded as skipped",
    )
    p.add_argument(
        "--validation",
        default=None,
        help="cuda only: validation.json of the device check's tests; kernels that failed one are not timed",
    )
    p.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="folder for the JSON results (default: bench/results)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights and inputs (case i uses seed+i)"
    )
    p.add_argument("--filter", default=None, help="only the cases whose 'op case' text contains this")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    known = gpu_cases.OPS if args.device == "cuda" else OPS
    args.ops = [o.strip() for o in (args.ops or ",".join(known)).split(",") if o.strip()]
    bad = [o for o in args.ops if o not in known]
    if bad:
        p.error(f"unknown op(s) {', '.join(bad)} for --device {args.device}; choose from {', '.join(known)}")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def _fmt_ms(s: float | None) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 100 else f"{ms:.1f}"


def _measure_ceilings(llc: int, budget: Budget, quick: bool) -> dict:
    probe = harness.ForeignLoad()
    out = harness.measure_ceilings(llc, budget, quick)
    out["foreign_load_cores"] = probe.stop()
    return out


def _ceilings(runs: list[dict]) -> dict:
    """The best copy and GEMM rates over ``runs`` (a ceiling is what the machine can do), plus all runs."""
    kinds = {k for r in runs for k in r.get("peaks", {})}
    return {
        "copy": max((r["copy"] for r in runs), key=lambda c: c["GBps"]),
        "gemm": max((r["gemm"] for r in runs), key=lambda c: c["GFLOPs"]),
        "peaks": {k: max((r["peaks"][k] for r in runs if k in r.get("peaks", {})), key=lambda c: c["GOPs"])
                  for k in sorted(kinds)},
        "measurements": runs,
    }


def _describe_ceilings(ceilings: dict) -> str:
    peaks = ", ".join(f"{k} {v['GOPs']:.0f} GOP/s" for k, v in ceilings.get("peaks", {}).items())
    return (f"stream copy {ceilings['copy']['GBps']:.1f} GB/s (read+write), MKL fp32 GEMM "
            f"{ceilings['gemm']['GFLOPs']:.1f} GFLOP/s (F.linear 2048^3)" + (f"; peaks {peaks}" if peaks else ""))


def compute_peak(case: Case, ceilings: dict) -> tuple[str, float]:
    """The compute ceiling (name, GOP/s) of a case's kernel: the int8 dot peak for the
    W8A8 ops, the bf16 dot peak for bf16 float ops, else the fp32 FMA peak (int8
    weight-only dequantizes to fp32); the MKL fp32 GEMM rate where no peak was measured."""
    peaks = ceilings.get("peaks", {})
    if case.op in ("int8_linear", "nm_int8_linear"):
        kind = "int8_dot"
    elif case.params.get("dtype") == "bfloat16":
        kind = "bf16_dot"
    else:
        kind = "fp32_fma"
    if kind in peaks:
        return kind, peaks[kind]["GOPs"]
    return "gemm", ceilings["gemm"]["GFLOPs"]


def _derive(r: dict, case: Case, ceilings: dict) -> None:
    """effdl's GFLOP/s, GB/s and distance to the nearer ceiling (once the ceilings are final)."""
    med = r["candidates"].get("effdl", {}).get("median_ms")
    if not med:
        return
    t = med / 1e3
    peak_name, peak = compute_peak(case, ceilings)
    bw = ceilings["copy"]["GBps"]
    work = case.work_flops / t / 1e9 if case.work_flops else 0.0
    gbps = case.bytes / t / 1e9
    r["effdl"] = {
        "GFLOPs": case.flops / t / 1e9 if case.flops else None,
        "GBps": gbps,
        "pct_of_peak": 100 * work / peak,
        "peak": peak_name,
        "pct_of_copy": 100 * gbps / bw,
        "pct_of_ceiling": 100 * max(work / peak, gbps / bw),
    }


def _progress(tag: str, case: Case, r: dict) -> None:
    ratios = " ".join(f"{SHORT.get(k, k)}={v:.2f}x" for k, v in r["ratios"].items())
    if r.get("error"):
        ratios = f"FAILED: {r['error']}"
    med = r["candidates"].get("effdl", {}).get("median_ms")
    print(
        f"[{tag}] {case.op} {case.name}: effdl {_fmt_ms(med and med / 1e3)} ms {ratios} "
        f"(bg {r['foreign_load_cores']}, {r['wall_s']:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def _run_case(case: Case, llc: int, budget: Budget, seed: int) -> dict:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            built = case.build(llc)
    except Exception as exc:  # effdl (or the reference) raised: report the case as failed, go on
        gc.collect()
        return {
            "op": case.op,
            "case": case.name,
            "params": case.params,
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "candidates": {},
            "ratios": {},
            "effdl": {},
            "check": {"ok": False, "rel_err": {}},
            "foreign_load_cores": None,
            "wall_s": round(time.perf_counter() - t0, 3),
        }
    t_build = time.perf_counter() - t0
    probe = harness.ForeignLoad()
    with torch.inference_mode():
        timings = harness.time_interleaved(built.candidates, budget)
    foreign = probe.stop()
    by_name = {t.name: t for t in timings}
    eff = by_name["effdl"]
    result: dict = {
        "op": case.op,
        "case": case.name,
        "params": case.params,
        "flops": case.flops,
        "work_flops": case.work_flops,
        "bytes": case.bytes,
        "n_sets": built.n_sets,
        "set_bytes": built.set_bytes,
        "check": {
            "against": built.ref,
            "tol": built.tol,
            "rel_err": built.errors,
            "ok": built.errors.get("effdl", float("inf")) <= built.tol,
        },
        "candidates": {c.name: {**by_name[c.name].to_json(), "note": c.note} for c in built.candidates},
        "ratios": {},
        "effdl": {},
        "foreign_load_cores": None if foreign is None else round(foreign, 2),
        "build_s": round(t_build, 3),
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    if eff.median_s:
        for t in timings[1:]:
            if t.median_s:
                result["ratios"][t.name] = t.median_s / eff.median_s
    del built, timings
    gc.collect()
    return result


def _tables(results: list[dict]) -> str:
    out = []
    for op in dict.fromkeys(r["op"] for r in results):
        rows_in = [r for r in results if r["op"] == op]
        peers = list(dict.fromkeys(n for r in rows_in for n in list(r["candidates"])[1:]))
        headers = ["op", "case", "effdl ms (IQR)"]
        for p in peers:
            headers += [f"{SHORT.get(p, p)} ms", f"{SHORT.get(p, p)} x"]
        headers += ["GFLOP/s", "GB/s", "%peak", "%copy", "bg", "check"]
        rows = []
        for r in rows_in:
            if r.get("error"):
                rows.append([op, r["case"], "failed"] + ["-"] * (len(headers) - 4) + ["FAILED"])
                continue
            e = r["candidates"]["effdl"]
            cell = (
                "failed"
                if e["median_ms"] is None
                else f"{_fmt_ms(e['median_ms'] / 1e3)} ({_fmt_ms(e['iqr_ms'] / 1e3)})"
            )
            row = [op, r["case"], cell]
            for p in peers:
                c = r["candidates"].get(p)
                if c is None or c["median_ms"] is None:
                    row += ["unavailable", "-"]
                else:
                    ratio = r["ratios"].get(p)
                    row += [_fmt_ms(c["median_ms"] / 1e3), "-" if ratio is None else f"{ratio:.2f}x"]
            eff = r["effdl"]
            row += [
                "-" if not eff.get("GFLOPs") else f"{eff['GFLOPs']:.1f}",
                "-" if not eff else f"{eff['GBps']:.1f}",
                "-" if not eff or "pct_of_peak" not in eff else f"{eff['pct_of_peak']:.0f}%",
                "-" if not eff or "pct_of_copy" not in eff else f"{eff['pct_of_copy']:.0f}%",
                "-" if r["foreign_load_cores"] is None else f"{r['foreign_load_cores']:.1f}",
                "ok" if r["check"]["ok"] else f"BAD {r['check']['rel_err'].get('effdl', float('nan')):.1e}",
            ]
            rows.append(row)
        out.append(harness.format_table(headers, rows))
        legend = {}
        for r in rows_in:
            if r.get("error"):
                legend.setdefault(f"FAILED {r['case']}", r["error"])
            for name, c in r["candidates"].items():
                if name != "effdl" and c.get("error"):
                    legend.setdefault(f"{SHORT.get(name, name)} unavailable", c["error"])
            for name, c in r["candidates"].items():
                legend.setdefault(SHORT.get(name, name) if name != "effdl" else "effdl", c["note"] or name)
        out.append("  " + "; ".join(f"{k} = {v}" for k, v in legend.items()))
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.device == "cuda":
        return gpu_run.main(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    budget, cbudget = (QUICK, CEILING_QUICK) if args.quick else (FULL, CEILING_FULL)
    case_list = cases(args.ops, args.quick)
    if args.filter:
        case_list = [c for c in case_list if args.filter in f"{c.op} {c.name}"]
    if args.list:
        for c in case_list:
            print(f"{c.op:<20} {c.name}")
        return 0

    import effdl
    from effdl import backends

    machine = harness.machine_info(threads)
    chosen = {op: backends.select(op, torch.device("cpu")) for op in args.ops if op in backends.OPS}
    machine["effdl_cpu_dispatch"] = chosen
    if any(v != "native" for v in chosen.values()):
        print(
            f"WARNING: effdl is not using its native CPU kernels ({chosen}); the 'effdl' column times "
            "the pure-PyTorch reference",
            file=sys.stderr,
        )
    llc = machine["llc_bytes"]
    start = time.perf_counter()
    print(
        f"# effdl {effdl.__version__} bench on {machine['cpu_model']}, {machine['cores']} cores, "
        f"{threads} threads, LLC {llc / harness.MiB:.0f} MiB, torch {torch.__version__}, "
        f"loadavg {machine['loadavg_start']}",
        file=sys.stderr,
    )

    probe = harness.ForeignLoad()
    time.sleep(0.5 if args.quick else 2.0)
    machine["foreign_load_idle_probe"] = probe.stop()
    if (machine["foreign_load_idle_probe"] or 0) > 0.3:
        print(
            f"WARNING: other processes keep {machine['foreign_load_idle_probe']:.1f} of {machine['cores']} cores "
            "busy; with as many threads as cores the timings will be noisy (see the 'bg' column)",
            file=sys.stderr,
        )
    ceilings = _ceilings([_measure_ceilings(llc, cbudget, args.quick)])
    print(f"# ceilings: {_describe_ceilings(ceilings)}", file=sys.stderr)

    results = []
    for i, case in enumerate(case_list):
        results.append(_run_case(case, llc, budget, args.seed + i))
        _progress(f"{i + 1}/{len(case_list)}", case, results[-1])

    # A shared machine: re-time the cases that ran while other processes held a core, while the
    # time allows (full run only), and keep the quietest attempt. Every attempt's bg is recorded.
    if not args.quick:
        for attempt in range(2, MAX_ATTEMPTS + 1):
            for i, case in enumerate(case_list):
                old = results[i]
                if (old.get("foreign_load_cores") or 0) <= NOISY_BG or old.get("error"):
                    continue
                if time.perf_counter() - start > RETRY_UNTIL_S:
                    break
                new = _run_case(case, llc, budget, args.seed + i)
                bgs = [*old.get("attempts_bg", [old["foreign_load_cores"]]), new["foreign_load_cores"]]
                keep = (
                    new
                    if not new.get("error") and (new["foreign_load_cores"] or 0) < old["foreign_load_cores"]
                    else old
                )
                keep["attempts_bg"] = bgs
                results[i] = keep
                _progress(f"retry {attempt}, {i + 1}/{len(case_list)}", case, new)
        # the ceilings are the best this machine does: measure again at the end, keep the better
        ceilings = _ceilings([*ceilings["measurements"], _measure_ceilings(llc, cbudget, args.quick)])
    for case, r in zip(case_list, results, strict=True):
        _derive(r, case, ceilings)

    total = time.perf_counter() - start
    machine["loadavg_end"] = harness.loadavg()
    before = machine["effdl"].get("build", {}).get("ext_mtime")
    after = harness.build_info().get("ext_mtime")
    machine["build_changed_during_run"] = before != after
    if before != after:
        print(
            "WARNING: effdl._C changed on disk during this run; this process kept the one it loaded "
            "(build.ext_mtime in the JSON), but repo_head may not describe it",
            file=sys.stderr,
        )
    today = datetime.date.today().isoformat()
    doc = {
        "schema": 1,
        "date": today,
        "mode": "quick" if args.quick else "full",
        "ops": args.ops,
        "machine": machine,
        "method": {
            "interleaved": True,
            "statistic": "median per call over samples (IQR = q3 - q1)",
            "budget": vars(budget),
            "ratio": "peer_time / effdl_time (>1: effdl faster)",
            "rotation": "each candidate cycles over n_sets weight/input sets totalling >= 2x LLC (max 256 sets)",
            "noise": f"full runs re-time cases with foreign_load_cores > {NOISY_BG} (up to {MAX_ATTEMPTS} attempts, "
            f"until {RETRY_UNTIL_S:.0f} s) and keep the quietest; ceilings = best of the start and end measurements",
            "GFLOPs": "dense-equivalent 2*M*N*K (nm_linear: the dense matmul it replaces)",
            "pct_of_ceiling": "max(pct_of_peak, pct_of_copy): work_flops/s over the compute peak of the kernel's "
            "instructions (int8 dot for W8A8, bf16 dot for bf16, else fp32 FMA; register-only loops), "
            "bytes/s over the copy bandwidth",
        },
        "ceilings": ceilings,
        "cases": results,
        "total_s": round(total, 1),
    }
    tables = _tables(results)
    print(
        f"\n{machine['cpu_model']} | {machine['cores']} cores | {threads} threads | torch {torch.__version__} | "
        f"effdl {effdl.__version__} ({machine['effdl'].get('cpu_kernel_isa')}) | {today}"
    )
    print(f"ceilings: {_describe_ceilings(ceilings)}")
    print(
        "ratio x = peer_time / effdl_time (>1: effdl faster); GFLOP/s, GB/s, %peak (of the compute peak of "
        "its instructions, on the work it does), %copy (of the copy bandwidth) are effdl's; "
        "bg = cores busy with other processes during the case\n"
    )
    print(tables)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a run with fewer threads than cores is a different configuration: it gets its own file
    tag = "" if threads == machine["cores"] else f"-{threads}t"
    path = out_dir / f"{machine['slug']}{tag}-{today}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    global last_written
    last_written = path
    bad = [
        f"{r['op']} {r['case']}"
        for r in results
        if r.get("error") or not r["check"]["ok"] or r["candidates"]["effdl"]["median_ms"] is None
    ]
    print(f"total {total:.1f} s")
    if bad:
        print(f"effdl failed or gave wrong results in {len(bad)} case(s): {'; '.join(bad)}")
    print(f"wrote {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
