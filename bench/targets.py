"""The CPU kernels' speed targets, checked against benchmark results.

``python -m bench.targets RESULT.json [RESULT.json ...]`` reads results written by
``python -m bench`` and prints, as Markdown, one row per target: the shapes it
covers, the measured ratio (or % of a ceiling) over those shapes as min / median /
max, and how many shapes meet it. Where several files hold the same case, the
last file given wins (so a focused re-run can replace part of a full one).
Targets are benchmarks, not tests: a miss is reported, never an error.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BERT = {(384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072), (3072, 768)}
LLAMA = {(4096, 4096), (4096, 11008)}


@dataclass(frozen=True)
class Target:
    kernel: str
    shapes: str
    select: Callable[[dict], bool]  # case -> whether the target covers it
    metric: str  # a peer name (ratio vs that peer), or "pct_of_peak" / "pct_of_copy"
    threshold: float
    what: str  # the metric in words


def _p(case: dict, key: str, default=None):
    return case["params"].get(key, default)


def _linear(op: str, ms: set[int] | Callable[[int], bool], kn: set[tuple[int, int]], dtype: str = "float32"):
    def select(case: dict) -> bool:
        M = _p(case, "M")
        if case["op"] != op or M is None:
            return False
        in_m = ms(M) if callable(ms) else M in ms
        return (in_m and (_p(case, "K"), _p(case, "N")) in kn
                and _p(case, "dtype", "float32") == dtype)

    return select


def _dwsep(batches: set[int]):
    return lambda case: case["op"] == "dwsep_conv2d" and _p(case, "B") in batches


_QL = _linear("int8_linear", {1, 16, 128, 512}, LLAMA | BERT)
_QL_BIG_M = _linear("int8_linear", lambda M: M >= 128, LLAMA | BERT)
_WO = _linear("int8_weight_linear", {1, 4, 16}, LLAMA)
_WO_BF16 = _linear("int8_weight_linear", {1, 4, 16}, LLAMA, "bfloat16")
_NM_SMALL = _linear("nm_linear", lambda M: 1 <= M <= 16, LLAMA | BERT)
_NM_BIG = _linear("nm_linear", lambda M: M >= 128, LLAMA | BERT)
_NM_SMALL_BF16 = _linear("nm_linear", lambda M: 1 <= M <= 16, LLAMA | BERT, "bfloat16")
_NM_BIG_BF16 = _linear("nm_linear", lambda M: M >= 128, LLAMA | BERT, "bfloat16")
_NMQ = _linear("nm_int8_linear", lambda M: 1 <= M <= 16, LLAMA | BERT)

TARGETS = [
    Target("QLinear dynamic (quantize_rows + int8_linear)", "M ∈ {1,16,128,512}; 4096²/4096×11008, BERT/MiniLM",
           _QL, "torch.ao dyn int8", 1.0, "× FBGEMM quantize_dynamic"),
    Target("", "", _QL, "F.linear fp32", 3.0, "× fp32 F.linear"),
    Target("", "M ≥ 128", _QL_BIG_M, "pct_of_peak", 80.0, "% of the int8 dot peak"),
    Target("int8_weight_linear", "M ∈ {1,4,16}; 4096², 4096×11008", _WO, "F.linear fp32", 3.0, "× fp32 F.linear"),
    Target("", "", _WO, "F.linear bf16", 1.5, "× bf16 F.linear"),
    Target("", "", _WO, "pct_of_copy", 80.0, "% of copy bandwidth"),
    Target("int8_weight_linear, bf16 x", "M ∈ {1,4,16}; 4096², 4096×11008", _WO_BF16, "F.linear bf16", 1.5,
           "× bf16 F.linear"),
    Target("", "", _WO_BF16, "pct_of_copy", 80.0, "% of copy bandwidth"),
    Target("nm_linear 2:4 fp32", "M = 1..16", _NM_SMALL, "F.linear fp32", 1.6, "× dense fp32 F.linear"),
    Target("", "", _NM_SMALL, "pct_of_copy", 80.0, "% of copy bandwidth"),
    Target("", "M ≥ 128", _NM_BIG, "F.linear fp32", 1.2, "× dense fp32 F.linear"),
    Target("nm_linear 2:4 bf16", "M = 1..16", _NM_SMALL_BF16, "F.linear bf16", 1.6, "× dense bf16 F.linear"),
    Target("", "M ≥ 128", _NM_BIG_BF16, "F.linear bf16", 1.2, "× dense bf16 F.linear"),
    Target("nm_int8_linear 2:4", "M = 1..16", _NMQ, "effdl int8 packed", 1.5,
           "× effdl dense int8_linear_packed (QLinear's path)"),
    Target("dwsep_conv2d", "MobileNetV2 blocks at 224², batch 1", _dwsep({1}), "torch CL (oneDNN)", 1.3,
           "× nn.Conv2d dw + pw, channels_last"),
    Target("", "batch 32", _dwsep({32}), "torch CL (oneDNN)", 1.3, "× nn.Conv2d dw + pw, channels_last"),
]


def _value(case: dict, metric: str) -> float | None:
    if metric.startswith("pct_of_"):
        return (case.get("effdl") or {}).get(metric)
    return case.get("ratios", {}).get(metric)


def load_cases(paths: list[Path]) -> list[dict]:
    """Every case of the files, the last file's copy where several hold the same op and case."""
    cases: dict[tuple[str, str, str], dict] = {}
    for path in paths:
        for case in json.loads(path.read_text())["cases"]:
            key = (case["op"], case["case"], str(case["params"].get("dtype", "")))
            cases[key] = case
    return list(cases.values())


def evaluate(cases: list[dict]) -> list[dict]:
    """One row per target: covered shapes, min / median / max of the metric, shapes meeting it, misses."""
    rows = []
    for t in TARGETS:
        values = [(c["case"], _value(c, t.metric)) for c in cases if t.select(c)]
        values = [(name, v) for name, v in values if v is not None]
        vs = [v for _, v in values]
        rows.append({
            "target": t,
            "n": len(vs),
            "min": min(vs) if vs else None,
            "median": statistics.median(vs) if vs else None,
            "max": max(vs) if vs else None,
            "met": sum(v >= t.threshold for v in vs),
            "misses": sorted((v, name) for name, v in values if v < t.threshold),
        })
    return rows


def _fmt(v: float | None, pct: bool) -> str:
    if v is None:
        return "–"
    return f"{v:.0f} %" if pct else f"{v:.2f}×"


def markdown(rows: list[dict]) -> str:
    out = ["| kernel | shapes | target | measured min / median / max | shapes meeting it |",
           "|---|---|---|---|---|"]
    for r in rows:
        t: Target = r["target"]
        pct = t.metric.startswith("pct_of_")
        goal = f"≥ {t.threshold:.0f} {t.what}" if pct else f"≥ {t.threshold:g}{t.what}"
        if r["n"] == 0:
            measured, met = "not measured", "–"
        else:
            measured = " / ".join(_fmt(r[k], pct) for k in ("min", "median", "max"))
            met = f"{r['met']} of {r['n']}"
        out.append(f"| {t.kernel} | {t.shapes} | {goal} | {measured} | {met} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="result JSON files of python -m bench (later ones win)")
    ap.add_argument("--misses", action="store_true", help="also list every shape that misses its target")
    args = ap.parse_args(argv)
    rows = evaluate(load_cases(args.results))
    print(markdown(rows))
    if args.misses:
        kernel = ""
        for r in rows:
            t: Target = r["target"]
            kernel = t.kernel or kernel  # a blank kernel continues the row above
            for v, name in r["misses"]:
                print(f"miss: {kernel} | {t.metric} | {name}: {v:.2f} < {t.threshold:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
