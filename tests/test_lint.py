"""The code base stays ruff-clean (configuration in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    proc = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_info_runs():
    # `effdl demo --quick` runs end to end in tests/test_demo.py, which checks its report
    info = subprocess.run([sys.executable, "-m", "effdl.cli", "info"], capture_output=True, text=True, check=True)
    assert "nm_linear" in info.stdout and "cpu_kernel_isa" in info.stdout
