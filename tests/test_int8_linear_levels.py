"""``int8_linear`` and ``int8_linear_packed`` are exact int32 on every CPU kernel level.

Each level runs ``int8_linear_exact_checks.py`` in a fresh interpreter with
``EFFDL_CPU_ISA`` forced (the level is chosen once per process); levels this
machine lacks are skipped with the reason.
"""

from __future__ import annotations

import json

import pytest
from test_cpu_isa import LEVELS, TESTS, _available, _python

from effdl import _ext

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"effdl._C not loaded: {_ext.load_error}")


@pytest.mark.parametrize("level", LEVELS)
def test_int8_linear_exact_on_level(level):
    if level not in _available():
        pytest.skip(f"this machine does not run the {level} kernels (here: {', '.join(_available())})")
    proc = _python([str(TESTS / "int8_linear_exact_checks.py")], level, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["isa"] == level, result
    assert result["cases"] == 8 * 8 * 8 + 2 + 6, result
