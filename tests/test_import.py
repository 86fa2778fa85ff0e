"""Import never fails: without the native extension effdl reports it and runs
on the pure-PyTorch reference, warning once per op."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import effdl

SCRIPT = """
import warnings, torch, effdl
from effdl.nn import SparseLinear
print("native:", effdl.info()["native"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    layer = SparseLinear(16, 8)
    layer(torch.randn(2, 16)); layer(torch.randn(2, 16))
    converted = effdl.sparsify_(torch.nn.Sequential(torch.nn.Linear(16, 8)), verbose=False)
    converted(torch.randn(2, 16))
print("warnings:", sum("pure-PyTorch reference" in str(w.message) for w in caught if "nm_linear" in str(w.message)))
"""


def test_import_without_native_extension(tmp_path: Path):
    pkg = Path(effdl.__file__).parent
    shutil.copytree(pkg, tmp_path / "effdl", ignore=shutil.ignore_patterns("_C*.so", "_C*.pyd", "__pycache__"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "native: NOT LOADED (effdl._C is not built" in proc.stdout
    assert "warnings: 1" in proc.stdout  # once, not per call
