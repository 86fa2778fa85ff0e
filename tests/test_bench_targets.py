"""``bench.targets``: the target table is computed from the results, not written by hand."""

from __future__ import annotations

import json
from pathlib import Path

from bench import targets


def _case(op: str, M: int, K: int, N: int, ratios: dict, effdl: dict | None = None, dtype="float32") -> dict:
    return {"op": op, "case": f"K={K} N={N} M={M}", "params": {"K": K, "N": N, "M": M, "dtype": dtype},
            "ratios": ratios, "effdl": effdl or {}}


def _row(rows: list[dict], kernel_prefix: str, metric: str) -> dict:
    kernel = ""
    for r in rows:
        kernel = r["target"].kernel or kernel
        if kernel.startswith(kernel_prefix) and r["target"].metric == metric:
            return r
    raise AssertionError(f"no target {kernel_prefix} / {metric}")


def test_counts_min_median_max_and_misses(tmp_path: Path):
    cases = [
        _case("int8_linear", 1, 4096, 4096, {"torch.ao dyn int8": 0.8, "F.linear fp32": 5.0}),
        _case("int8_linear", 16, 4096, 4096, {"torch.ao dyn int8": 1.2, "F.linear fp32": 4.0}),
        _case("int8_linear", 128, 768, 3072, {"torch.ao dyn int8": 1.1}, {"pct_of_peak": 85.0}),
        _case("int8_linear", 2, 4096, 4096, {"torch.ao dyn int8": 9.0}),  # M=2 is not a target shape
        _case("nm_linear", 1, 4096, 4096, {"F.linear bf16": 2.0}, dtype="bfloat16"),
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"cases": cases}))
    rows = targets.evaluate(targets.load_cases([path]))
    fbgemm = _row(rows, "QLinear", "torch.ao dyn int8")
    assert (fbgemm["n"], fbgemm["met"], fbgemm["min"], fbgemm["max"]) == (3, 2, 0.8, 1.2)
    assert fbgemm["misses"] == [(0.8, "K=4096 N=4096 M=1")]
    assert _row(rows, "QLinear", "pct_of_peak")["met"] == 1
    assert _row(rows, "nm_linear 2:4 bf16", "F.linear bf16")["n"] == 1
    assert _row(rows, "nm_linear 2:4 fp32", "F.linear fp32")["n"] == 0  # bf16 cases do not count for fp32
    table = targets.markdown(rows)
    assert "| 0.80× / 1.10× / 1.20× | 2 of 3 |" in table
    assert "not measured" in table


def test_later_files_replace_the_same_case(tmp_path: Path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"cases": [_case("int8_linear", 1, 768, 768, {"torch.ao dyn int8": 0.5})]}))
    b.write_text(json.dumps({"cases": [_case("int8_linear", 1, 768, 768, {"torch.ao dyn int8": 1.5})]}))
    rows = targets.evaluate(targets.load_cases([a, b]))
    assert _row(rows, "QLinear", "torch.ao dyn int8")["min"] == 1.5
