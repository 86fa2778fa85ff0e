"""``effdl plan``: measure, choose, print the table, write the plan JSON."""

from __future__ import annotations

import argparse
import copy

import torch

from effdl.plan.build import make_plan
from effdl.plan.candidates import KINDS
from effdl.plan.measure import LAYER_BUDGET, MODEL_BUDGET, ExampleInput, interleaved_timer
from effdl.plan.report import format_plan
from effdl.plan.solver import DEFAULT_MARGIN, TARGETS
from effdl.plan.timing import Budget


def add_parser(sub) -> None:
    from effdl.plan import specs

    p = sub.add_parser("plan", help="measure each layer's candidate conversions on this device and plan",
                       description=specs.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="torchvision:NAME | hf-bert-tiny|mini|small|base | "
                   "hf-bert:KEY=V,... | path/to/file.py:FACTORY | package.module:FACTORY")
    p.add_argument("--input", required=True, help="input shape, e.g. 1x3x224x224 (BERT: BATCHxSEQ)")
    p.add_argument("--target", choices=TARGETS, default="latency")
    p.add_argument("--max-error", type=float, default=None, metavar="DB",
                   help="lowest acceptable per-layer output SQNR in dB (e.g. 30); default: any")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="a candidate must be this much faster "
                   f"than dense (default {DEFAULT_MARGIN})")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"candidate kinds to consider (default {','.join(KINDS)})")
    p.add_argument("--out", default=None, help="write the plan JSON here")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--budget-s", type=float, default=LAYER_BUDGET.seconds, help="seconds of samples per layer")
    p.add_argument("--verify", action="store_true", help="apply the plan to a copy and time both models "
                   "(interleaved): measured vs predicted speedup")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from effdl.plan import specs

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    model = specs.load_model(args.model)
    x = specs.make_input(model, args.input, args.seed)
    budget = Budget(**{**vars(LAYER_BUDGET), "seconds": args.budget_s})
    plan = make_plan(model, x, args.target, args.max_error, args.margin, kinds, interleaved_timer(budget),
                     progress=True)
    plan.meta["model"], plan.meta["input"] = args.model, args.input
    print(format_plan(plan))
    if args.verify:
        measured = verify(model, x, plan)
        plan.meta["verify"] = measured
        print(f"verify: dense {measured['dense_ms']:.3f} ms, planned {measured['planned_ms']:.3f} ms: measured "
              f"{measured['measured_speedup']:.2f}x vs predicted {measured['predicted_speedup']:.2f}x "
              f"({100 * measured['rel_diff']:+.1f} %)")
    if args.out:
        plan.save(args.out)
        print(f"wrote {args.out}")
    return 0


def verify(model, example_input, plan, timer=None) -> dict:
    """Apply ``plan`` to a copy of ``model``; time both whole models interleaved; return
    the measured and predicted speedups and their relative difference."""
    from effdl.plan.apply import apply_plan
    from effdl.plan.measure import time_model

    planned = apply_plan(copy.deepcopy(model), plan, verbose=False)
    secs = time_model(model, ExampleInput.of(example_input), timer or interleaved_timer(model_budget=MODEL_BUDGET),
                      [("planned", planned)])
    measured = secs["dense"] / secs["planned"]
    predicted = plan.predicted_speedup()
    return {"dense_ms": secs["dense"] * 1e3, "planned_ms": secs["planned"] * 1e3, "measured_speedup": measured,
            "predicted_speedup": predicted, "rel_diff": predicted / measured - 1}
