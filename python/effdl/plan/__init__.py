"""Know the speedup before you convert: per-layer measurement, a plan, and its application.

``make_plan(model, example_input, target="latency"|"size", max_error_db=...)``
micro-benchmarks every convertible layer (``nn.Linear`` -> 2:4 sparse, int8 dynamic,
int8 weight-only, sparse-int8 where the build has it; depthwise-separable runs ->
fused) on the input it really gets, measures each candidate's output SQNR, and picks
per layer — never a candidate that is slower than the dense layer. The
:class:`Plan` is a JSON file a user can edit; ``apply_plan(model, plan)`` converts
exactly what it says.
"""

from effdl.plan.apply import apply_plan
from effdl.plan.build import make_plan, measure_unit
from effdl.plan.candidates import KINDS, find_units
from effdl.plan.error import sqnr_db
from effdl.plan.io import PLAN_VERSION, CandidateResult, LayerPlan, Plan, load_plan
from effdl.plan.measure import ExampleInput, Timer, interleaved_timer
from effdl.plan.report import format_plan
from effdl.plan.solver import DEFAULT_MARGIN, TARGETS, choose

__all__ = [
    "DEFAULT_MARGIN",
    "KINDS",
    "PLAN_VERSION",
    "TARGETS",
    "CandidateResult",
    "ExampleInput",
    "LayerPlan",
    "Plan",
    "Timer",
    "apply_plan",
    "choose",
    "find_units",
    "format_plan",
    "interleaved_timer",
    "load_plan",
    "make_plan",
    "measure_unit",
    "sqnr_db",
]
