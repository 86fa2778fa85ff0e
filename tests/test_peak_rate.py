"""``effdl._ext.cpu_peak_rate``: the register-only compute ceilings the benchmarks report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from effdl import _ext

pytestmark = pytest.mark.skipif(not _ext.available(), reason="effdl._C is not built")

ISA = _ext.cpu_isa()["isa"]


def test_rates_are_positive_where_the_level_has_the_instruction():
    fp32, int8 = _ext.cpu_peak_rate("fp32_fma", 0.02), _ext.cpu_peak_rate("int8_dot", 0.02)
    if ISA == "portable":
        assert fp32 is None and int8 is None
    else:
        assert fp32 > 1e9 and int8 > 1e9
        # one int8 dot instruction does 4x (VNNI) or 2x (AVX2 pairs) the multiply-adds of an fp32 FMA
        assert int8 > fp32
    bf16 = _ext.cpu_peak_rate("bf16_dot", 0.02)
    has_bf16 = _ext.cpu_features().get("avx512bf16") and ISA in ("avx512", "avx512_vnni", "avx512_bf16")
    assert (bf16 is not None and bf16 > 1e9) if has_bf16 else bf16 is None


def test_bad_arguments_raise():
    with pytest.raises(RuntimeError, match=r"kind must be 'fp32_fma', 'int8_dot' or 'bf16_dot', got 'fp64'"):
        _ext.cpu_peak_rate("fp64")
    with pytest.raises(RuntimeError, match=r"seconds must be in \(0, 10\]"):
        _ext.cpu_peak_rate("fp32_fma", 0.0)


@pytest.mark.parametrize("level", ["portable", "avx2"])
def test_follows_the_forced_level(level):
    if level not in _ext.cpu_isa()["available"]:
        pytest.skip(f"this machine does not run the {level} level")
    code = "from effdl import _ext; print(_ext.cpu_peak_rate('fp32_fma', 0.02), _ext.cpu_peak_rate('bf16_dot', 0.02))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "EFFDL_CPU_ISA": level},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "None"  # no bf16 dot below AVX-512
    assert (out[0] == "None") == (level == "portable")
