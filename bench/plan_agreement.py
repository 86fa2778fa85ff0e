"""Does ``effdl plan`` predict the speedup that ``apply_plan`` delivers? (issue #6 evidence)

    PYTHONPATH=python python -m bench.plan_agreement [--threads 1] [--repeats 2] [--out bench/results]

For each model (random weights, no download) and input: ``make_plan`` (per-layer
interleaved micro-benchmarks on the real input shapes), then ``apply_plan`` on a copy
and both whole models timed interleaved (medians). Reports predicted vs measured
speedup and ``predicted / measured - 1``; the issue asks for agreement within 25 %.
Writes ``<out>/plan-agreement-<machine>[-<threads>t]-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from . import harness

CONFIGS = [
    # (model spec, input, --max-error): int8 dynamic wins clearly on BERT-base-sized linears at M = 1
    ("hf-bert:hidden_size=768,num_hidden_layers=2,num_attention_heads=12,intermediate_size=3072", "1x1", 30.0),
    ("hf-bert:hidden_size=768,num_hidden_layers=2,num_attention_heads=12,intermediate_size=3072", "4x8", 30.0),
    ("torchvision:mobilenet_v2", "1x3x224x224", 30.0),
]


def run_one(spec: str, shape: str, max_error: float, seed: int) -> dict:
    from effdl.plan import make_plan
    from effdl.plan.cli import verify
    from effdl.plan.specs import load_model, make_input

    torch.manual_seed(seed)
    model = load_model(spec)
    x = make_input(model, shape, seed)
    t0 = time.perf_counter()
    plan = make_plan(model, x, "latency", max_error)
    t_plan = time.perf_counter() - t0
    got = verify(model, x, plan)
    return {
        **got,
        "converted": {lay.name: lay.choice for lay in plan.layers if lay.choice},
        "layers": len(plan.layers),
        "model_ms_in_plan": plan.model_ms,
        "remainder_ms": plan.remainder_ms(),
        "weights": plan.meta["cache"]["weights"],
        "plan_s": round(t_plan, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plan_agreement", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: robust on a shared machine)")
    p.add_argument("--repeats", type=int, default=2, help="independent plan + verify runs per config")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = harness.machine_info(torch.get_num_threads())
    results = []
    for spec, shape, max_error in CONFIGS:
        runs = []
        for r in range(args.repeats):
            probe = harness.ForeignLoad()
            run = run_one(spec, shape, max_error, seed=r)
            run["foreign_load_cores"] = probe.stop()
            runs.append(run)
            print(f"{spec} {shape} run {r}: predicted {run['predicted_speedup']:.2f}x, measured "
                  f"{run['measured_speedup']:.2f}x ({100 * run['rel_diff']:+.1f} %), "
                  f"{len(run['converted'])}/{run['layers']} layers converted", file=sys.stderr, flush=True)
        med = statistics.median(abs(r["rel_diff"]) for r in runs)
        results.append({"model": spec, "input": shape, "max_error_db": max_error, "runs": runs,
                        "median_abs_rel_diff": med, "within_25pct": all(abs(r["rel_diff"]) <= 0.25 for r in runs)})
    rows = [[r["model"].split(",")[0] + ("..." if "," in r["model"] else ""), r["input"],
             " ".join(f"{x['predicted_speedup']:.2f}x" for x in r["runs"]),
             " ".join(f"{x['measured_speedup']:.2f}x" for x in r["runs"]),
             " ".join(f"{100 * x['rel_diff']:+.1f}%" for x in r["runs"]), "yes" if r["within_25pct"] else "NO"]
            for r in results]
    print(harness.format_table(["model", "input", "predicted", "measured", "pred/meas - 1", "within 25 %"], rows))
    today = datetime.date.today().isoformat()
    tag = "" if args.threads == machine["cores"] else f"-{args.threads}t"
    path = Path(args.out) / f"plan-agreement-{machine['slug']}{tag}-{today}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": 1, "date": today, "machine": machine, "configs": results}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0 if all(r["within_25pct"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
