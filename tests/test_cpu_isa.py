"""Run-time choice of the CPU kernel level, and ``EFFDL_CPU_ISA`` forcing it.

The native side picks its kernel table once per process, so each case runs a
fresh interpreter with the variable set. For every level this machine runs, all
operators are checked against their references on that level's kernels
(``isa_op_checks.py``); levels the machine lacks are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import effdl
from effdl import _ext

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
LEVELS = ("portable", "avx2", "avx512", "avx512_vnni", "avx512_bf16")  # narrowest first

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"effdl._C not loaded: {_ext.load_error}")


def _available() -> list[str]:
    return list(_ext.cpu_isa()["available"])


def _python(code_or_script: list[str], isa: str | None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("EFFDL_CPU_ISA", None)
    if isa is not None:
        env["EFFDL_CPU_ISA"] = isa
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run([sys.executable, *code_or_script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


_INFO_AND_CALL = """
import json, torch, effdl
from effdl.info import format_info
info = effdl.info()
try:
    torch.ops.effdl.quantize_rows(torch.randn(2, 8))
    error = None
except RuntimeError as exc:
    error = str(exc).splitlines()[0]
print(json.dumps({"isa": info["cpu_kernel_isa"], "forced": info["cpu_kernel_isa_forced"], "error": error,
                  "text": format_info(info)}))
"""


def _info_and_call(isa: str | None) -> dict:
    proc = _python(["-c", _INFO_AND_CALL], isa, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_levels_known_here():
    available = _available()
    assert available[0] == "portable", "the portable kernels always run"
    assert set(available) <= set(LEVELS)
    assert available == [lvl for lvl in LEVELS if lvl in available], "narrowest first"


@pytest.mark.parametrize("level", LEVELS)
def test_every_op_on_forced_level(level):
    """All ops against their references with EFFDL_CPU_ISA=<level>; info reports the level as forced."""
    if level not in _available():
        pytest.skip(f"this machine does not run the {level} kernels (here: {', '.join(_available())})")
    proc = _python([str(TESTS / "isa_op_checks.py")], level)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["isa"] == level and result["forced"] is True, result
    assert result["checked"] > 50
    assert proc.returncode == 0 and not result["failures"], "\n".join(result["failures"])


def test_detected_level_is_the_widest():
    got = _info_and_call(None)
    assert got == {**got, "isa": _available()[-1], "forced": False, "error": None}
    assert f"cpu_kernel_isa: {_available()[-1]}" in got["text"]
    assert "cpu_kernel_isa_forced: False" in got["text"]


@pytest.mark.parametrize("spelling", [" AVX2\n", "auto"])
def test_spelling_is_forgiving(spelling):
    if spelling != "auto" and "avx2" not in _available():
        pytest.skip("this machine does not run the avx2 kernels")
    got = _info_and_call(spelling)
    assert got["error"] is None
    if spelling == "auto":
        assert got["isa"] == _available()[-1] and got["forced"] is False
    else:
        assert got["isa"] == "avx2" and got["forced"] is True


def test_unknown_level_is_a_clear_error():
    """An unknown value: info() says why (it never raises), the first kernel call raises naming the allowed values."""
    got = _info_and_call("avx1024")
    expected = "EFFDL_CPU_ISA must be one of portable, avx2, avx512, avx512_vnni, avx512_bf16 (or unset / auto), got 'avx1024'"
    assert got["error"] == f"effdl: cannot choose the CPU kernels: {expected}"
    assert got["isa"] == f"UNUSABLE ({expected})"
    assert got["forced"] is True


def test_unavailable_level_is_a_clear_error():
    missing = [lvl for lvl in LEVELS if lvl not in _available()]
    if not missing:
        pytest.skip(f"this machine runs every level ({', '.join(LEVELS)}): none to refuse")
    got = _info_and_call(missing[-1])
    assert got["error"] is not None
    assert f"EFFDL_CPU_ISA={missing[-1]} is not available" in got["error"]
    assert f"available here: {', '.join(_available())}" in got["error"]


def test_info_in_this_process():
    info = effdl.info()
    env = os.environ.get("EFFDL_CPU_ISA", "").strip()
    assert info["cpu_kernel_isa_forced"] is bool(env and env.lower() != "auto")
    assert info["cpu_kernel_isas_here"] == ", ".join(_available())
    if not env:
        assert info["cpu_kernel_isa"] == _available()[-1]
