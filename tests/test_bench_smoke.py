"""The benchmark harness runs end to end (a quick nm_linear pass) and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_nm_linear(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--ops", "nm_linear", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    written = proc.stdout.strip().splitlines()[-1]
    assert written.startswith("wrote ")
    result = json.loads(Path(written.removeprefix("wrote ").strip()).read_text())
    cases = [c for c in result["cases"] if c["op"] == "nm_linear"]
    assert cases and all(c["check"]["ok"] for c in cases)
    assert all(c["candidates"]["effdl"]["median_ms"] > 0 for c in cases)
    assert result["ceilings"]["copy"]["GBps"] > 0
    peaks = result["ceilings"]["peaks"]
    if result["machine"]["effdl"]["cpu_kernel_isa"] not in (None, "portable"):
        assert peaks["fp32_fma"]["GOPs"] > 0 and peaks["int8_dot"]["GOPs"] > 0
    assert all(0 < c["effdl"]["pct_of_copy"] and 0 <= c["effdl"]["pct_of_peak"] for c in cases)
