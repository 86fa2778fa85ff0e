"""Native tests of the torch-free kernel cores (csrc/core/).

Configures and builds the CMake project at the repository root (tests/native/,
ASan + UBSan) in a temporary directory and runs it with ctest. Needs cmake (the
pip ``cmake`` package provides one) and a C++17 compiler; skips, with the
reason, where either is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _find_cmake() -> str | None:
    # PATH first; then next to this interpreter, where `pip install cmake` puts it
    # when the virtual environment is not activated
    return shutil.which("cmake") or shutil.which("cmake", path=str(Path(sys.executable).parent))


def _find_cxx() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _run(cmd: list[str], cwd: Path, timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n{e.stdout or ''}\n{e.stderr or ''}")
    if proc.returncode != 0:
        pytest.fail(
            f"exit {proc.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-20000:]}\n--- stderr ---\n{proc.stderr[-20000:]}"
        )


def test_native_cores(tmp_path: Path) -> None:
    cmake = _find_cmake()
    if cmake is None:
        pytest.skip("cmake not found on PATH (install it, e.g. `pip install cmake`): native tests not run")
    cxx = _find_cxx()
    if cxx is None:
        pytest.skip("no C++ compiler found (c++, g++, clang++ or $CXX): native tests not run")
    ctest = shutil.which("ctest", path=str(Path(cmake).parent)) or shutil.which("ctest")
    if ctest is None:
        pytest.skip(f"ctest not found next to {cmake} nor on PATH: native tests not run")

    build = tmp_path / "native-build"
    _run([cmake, "-S", str(ROOT), "-B", str(build), f"-DCMAKE_CXX_COMPILER={cxx}"], cwd=ROOT, timeout=180)
    # the sanitizer build of the five per-level kernel tables takes minutes each on two cores
    _run([cmake, "--build", str(build), "-j2"], cwd=ROOT, timeout=1500)
    # run from the build directory: `ctest --test-dir` needs CMake >= 3.20
    _run([ctest, "--output-on-failure", "--timeout", "300"], cwd=build, timeout=900)
