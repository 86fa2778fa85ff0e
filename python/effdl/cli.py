"""The ``effdl`` command: ``effdl info``, ``effdl demo``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
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
    return 2


if __name__ == "__main__":
    sys.exit(main())
