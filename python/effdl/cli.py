"""The ``effdl`` command: ``effdl info``, ``effdl demo``, ``effdl plan``, ``effdl bench``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # every further argument (--help included) belongs to python -m bench
        return _bench(argv[1:])
    parser = argparse.ArgumentParser(prog="effdl", description="Compressed PyTorch models, really smaller and faster.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="versions, CPU features, CUDA archs, ops x backends")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_demo = sub.add_parser("demo", help="teacher -> distilled student -> pruned -> int8 -> effdl kernels, "
                                         "on the digits, with a report")
    p_demo.add_argument("--quick", action="store_true", help="a short run for CI (well under a minute)")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--out", default="report", help="report folder (default: report)")
    p_demo.add_argument("--device", default="cpu", help="device to run on (cpu)")
    p_demo.add_argument("--pipeline", default=None,
                        help="comma-separated steps among teacher,student,distill,prune,ptq,qat,convert "
                             "(default: all but qat)")
    p_demo.add_argument("--prune", dest="prune_method", default=None, choices=("2:4", "unstructured", "channel"),
                        help="pruning of the student (default 2:4)")
    p_demo.add_argument("--sparsity", type=float, default=None,
                        help="unstructured sparsity / fraction of channels removed (default 0.5)")
    p_demo.add_argument("--threads", type=int, default=None, help="torch threads (default 1: tiny layers)")
    from effdl.plan import cli as plan_cli

    plan_cli.add_parser(sub)
    p_bench = sub.add_parser("bench", help="kernel microbenchmarks vs their peers (from a checkout): JSON + plot",
                             add_help=False)
    p_bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of python -m bench (--help)")
    args = parser.parse_args(argv)

    if args.command == "info":
        from effdl.info import format_info, info

        print(json.dumps(info(), indent=2) if args.json else format_info())
        return 0
    if args.command == "demo":
        from effdl import demo

        pipeline = tuple(s.strip() for s in args.pipeline.split(",") if s.strip()) if args.pipeline else None
        try:
            demo.main(quick=args.quick, seed=args.seed, out=args.out, pipeline=pipeline, device=args.device,
                      threads=args.threads, prune_method=args.prune_method, sparsity=args.sparsity)
        except ValueError as e:
            parser.error(f"demo: {e}")
        return 0
    if args.command == "plan":
        return plan_cli.run(args)
    if args.command == "bench":
        return _bench(args.bench_args)
    return 2


def _bench(bench_args: list[str]) -> int:
    """``effdl bench [--quick] [--out DIR] [--ops ...]``: the ``bench/`` microbenchmarks of
    the repository checkout this package runs from, plus a speedup-vs-batch plot."""
    root = Path(__file__).resolve().parents[2]  # <checkout>/python/effdl/cli.py
    if not (root / "bench" / "__main__.py").is_file():
        print("effdl bench: the benchmarks live in the repository's bench/ folder, which this installation "
              f"does not have (looked in {root}); run it from a source checkout (pip install -e .)", file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from bench import plot

    return plot.run_and_plot(bench_args)


if __name__ == "__main__":
    sys.exit(main())
