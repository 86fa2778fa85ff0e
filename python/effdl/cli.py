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
    p_demo = sub.add_parser("demo", help="convert a small model three ways and compare with float")
    p_demo.add_argument("--quick", action="store_true", help="fewer repetitions (seconds)")
    p_demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "info":
        from effdl.info import format_info, info

        print(json.dumps(info(), indent=2) if args.json else format_info())
        return 0
    if args.command == "demo":
        from effdl import demo

        demo.main(quick=args.quick, seed=args.seed)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
