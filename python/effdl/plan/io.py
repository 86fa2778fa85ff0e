"""The plan: a versioned, human-editable JSON document.

A user may edit a layer's ``"choice"`` (a candidate kind listed under that layer, or
``null`` to keep it dense) before :func:`effdl.plan.apply_plan`; everything else is
the record of what was measured.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field

PLAN_FORMAT = "effdl.plan"
PLAN_VERSION = 1


@dataclass
class CandidateResult:
    """One candidate conversion of a layer: its latency per call on the layer's real
    input, its output SQNR vs the dense layer (dB), its stored bytes; or why it failed."""

    latency_ms: float | None = None
    sqnr_db: float | None = None
    bytes: int | None = None
    error: str | None = None

    def usable(self) -> bool:
        return self.error is None and self.latency_ms is not None


@dataclass
class LayerPlan:
    """One convertible layer (``type`` ``"Linear"`` or ``"DWSepRun"``; ``modules`` are
    the module names the conversion replaces, ``name`` is the first)."""

    name: str
    type: str
    modules: list[str]
    input_shape: list[int]
    calls: int  # times the layer runs per model forward
    dense_ms: float
    dense_bytes: int
    candidates: dict[str, CandidateResult] = field(default_factory=dict)
    choice: str | None = None
    reason: str = ""  # why the solver chose what it chose

    def latency_ms(self, kind: str | None = None) -> float:
        """Per-forward time of the layer (all its calls) as dense or as ``kind``."""
        per_call = self.dense_ms if kind is None else self.candidates[kind].latency_ms
        return per_call * self.calls


@dataclass
class Plan:
    """Per-layer measurements and choices, plus the whole-model dense time.

    Prediction (see :meth:`predicted_ms`): the time of the rest of the model plus each
    layer's time as dense or as its chosen candidate, all measured on this device.
    """

    layers: list[LayerPlan]
    model_ms: float  # measured dense forward time of the whole model
    input_shapes: list
    device: str
    target: str | None = None
    max_error_db: float | None = None
    margin: float | None = None
    rest_ms: float | None = None  # measured time of the model outside the measured layers
    meta: dict = field(default_factory=dict)  # torch/effdl versions, threads, timer budget
    format: str = PLAN_FORMAT
    version: int = PLAN_VERSION

    # ------------------------------------------------------------ prediction

    def layers_dense_ms(self) -> float:
        return sum(lay.latency_ms() for lay in self.layers)

    def remainder_ms(self) -> float:
        """What the model spends outside the measured layers (activations, attention,
        norms, Python): :attr:`rest_ms`, timed with the layers stubbed out; where that
        was impossible, the whole-model time minus the layers' micro-benchmarked dense
        times, clamped at 0."""
        if self.rest_ms is not None:
            return self.rest_ms
        return max(0.0, self.model_ms - self.layers_dense_ms())

    def predicted_ms(self) -> float:
        """remainder + sum over layers of (chosen candidate's or dense) time."""
        return self.remainder_ms() + sum(lay.latency_ms(lay.choice) for lay in self.layers)

    def predicted_speedup(self) -> float:
        """(remainder + dense layers) / (remainder + layers with the choices)."""
        dense = self.remainder_ms() + self.layers_dense_ms()
        return dense / self.predicted_ms()

    def bytes(self, planned: bool = True) -> int:
        """Stored bytes of the measured layers, dense or with the choices."""
        return sum(lay.candidates[lay.choice].bytes if planned and lay.choice else lay.dense_bytes
                   for lay in self.layers)

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict:
        d = asdict(self)
        d = {"format": d.pop("format"), "version": d.pop("version"), **d}
        d["summary"] = {
            "predicted_ms": self.predicted_ms(),
            "predicted_speedup": self.predicted_speedup(),
            "layers_dense_ms": self.layers_dense_ms(),
            "remainder_ms": self.remainder_ms(),
            "converted": sum(lay.choice is not None for lay in self.layers),
            "dense_bytes": self.bytes(planned=False),
            "planned_bytes": self.bytes(planned=True),
        }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise ValueError(f"not an effdl plan: expected \"format\": \"{PLAN_FORMAT}\"")
        if d.get("version") != PLAN_VERSION:
            raise ValueError(f"effdl plan version {d.get('version')!r} is not supported (this effdl reads {PLAN_VERSION})")
        d = copy.deepcopy({k: v for k, v in d.items() if k != "summary"})  # summary: derived, recomputed
        try:
            layers = []
            for lay in d.pop("layers"):
                cands = {k: CandidateResult(**v) for k, v in lay.pop("candidates").items()}
                layers.append(LayerPlan(**lay, candidates=cands))
            plan = cls(layers=layers, **d)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed effdl plan: {exc}") from exc
        for lay in plan.layers:
            if lay.choice is not None and lay.choice not in lay.candidates:
                raise ValueError(f"plan layer {lay.name!r}: choice {lay.choice!r} is not one of its candidates "
                                 f"{sorted(lay.candidates)} (or null for dense)")
            if lay.choice is not None and not lay.candidates[lay.choice].usable():
                raise ValueError(f"plan layer {lay.name!r}: choice {lay.choice!r} failed when measured "
                                 f"({lay.candidates[lay.choice].error})")
        return plan

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        with open(path) as f:
            return cls.from_dict(json.load(f))


def load_plan(plan: Plan | dict | str | os.PathLike) -> Plan:
    """A :class:`Plan` from a plan, its dict, or a JSON file path."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, dict):
        return Plan.from_dict(plan)
    if isinstance(plan, (str, os.PathLike)):
        return Plan.load(plan)
    raise ValueError(f"plan must be a Plan, a dict or a path to a plan JSON, got {type(plan).__name__}")
