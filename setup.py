"""Builds effdl._C: CPU kernels always, CUDA kernels when torch is a CUDA build
and nvcc is found (no GPU needed).

Environment:
  EFFDL_CUDA=0|1|auto     CUDA kernels off / required / when possible (default auto)
  TORCH_CUDA_ARCH_LIST    CUDA archs (default "8.0;9.0a": sm_80 and sm_90a)
  MAX_JOBS                parallel compile jobs
  DEBUG=1                 -O0 -g, no NDEBUG
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent.resolve()
DEFAULT_CUDA_ARCHS = "8.0;9.0a"


def _cuda_mode() -> str:
    mode = os.environ.get("EFFDL_CUDA", "auto").strip().lower()
    if mode not in ("0", "1", "auto"):
        sys.exit(f"EFFDL_CUDA must be 0, 1 or auto, got {mode!r}")
    return mode


def _nvidia_wheel_includes() -> list[str]:
    """Header folders of torch's nvidia-* wheels (cuBLAS, cuSPARSE, ... headers
    that a bare nvcc install lacks but ATen's CUDA headers include)."""
    try:
        import nvidia  # namespace package installed with CUDA builds of torch
    except ImportError:
        return []
    found: list[str] = []
    for base in list(getattr(nvidia, "__path__", [])):
        found += sorted(p for p in glob.glob(os.path.join(base, "*", "include")) if os.path.isdir(p))
    return found


def _resolve_cuda_home() -> None:
    """torch takes CUDA_HOME to be the folder above the first `nvcc` on PATH; when
    that nvcc is a wrapper script (e.g. /usr/local/bin/nvcc exec'ing
    /usr/local/cuda-13.0/bin/nvcc) the guess holds no libcudart and the link fails.
    Then ask nvcc where it really lives. Must run before torch.utils.cpp_extension
    is imported; an explicit CUDA_HOME / CUDA_PATH always wins."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or _cuda_mode() == "0":
        return
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return
    guess = Path(nvcc).resolve().parent.parent
    if any((guess / lib / "libcudart.so").exists() for lib in ("lib64", "lib")):
        return
    try:
        out = subprocess.run(
            [nvcc, "-dryrun", "-E", "-x", "cu", os.devnull], capture_output=True, text=True, timeout=60
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return
    for line in out.splitlines():
        if line.startswith("#$ _HERE_="):  # the folder of the real nvcc binary
            home = Path(line.split("=", 1)[1].strip()).resolve().parent
            if (home / "bin" / "nvcc").exists():
                os.environ["CUDA_HOME"] = str(home)
            return


def _want_cuda(torch, cuda_home: str | None) -> bool:
    mode = _cuda_mode()
    if mode == "0":
        return False
    has_nvcc = cuda_home is not None and (
        os.path.exists(os.path.join(cuda_home, "bin", "nvcc")) or shutil.which("nvcc") is not None
    )
    ok = torch.version.cuda is not None and has_nvcc
    if mode == "1" and not ok:
        why = "torch is not a CUDA build" if torch.version.cuda is None else "nvcc was not found"
        sys.exit(f"EFFDL_CUDA=1 but the CUDA kernels cannot be built: {why}")
    return ok


def _extension():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension

    debug = os.environ.get("DEBUG", "0") == "1"
    with_cuda = _want_cuda(torch, CUDA_HOME)
    sources = sorted(
        str(p.relative_to(ROOT))
        for p in [ROOT / "csrc" / "ops.cpp", ROOT / "csrc" / "module.cpp", ROOT / "csrc" / "checks.cpp",
                  ROOT / "csrc" / "core" / "isa.cpp", ROOT / "csrc" / "core" / "kernel_tables.cpp"]
        + list((ROOT / "csrc" / "core").glob("kernel_table_*.cpp"))  # one unit per ISA level
        + list((ROOT / "csrc" / "cpu").glob("*.cpp"))
    )
    torch_version = torch.__version__.split("+")[0]
    macros = [("EFFDL_TORCH_VERSION", f'"{torch_version}"')]
    # no -std flag: torch.utils.cpp_extension picks the standard its headers need
    opt = ["-O0", "-g"] if debug else ["-O3"]
    if not debug:
        macros.append(("NDEBUG", None))
    # -fopenmp: at::parallel_for is an inline template that is serial unless the
    # extension itself is compiled with OpenMP (it binds to torch's libgomp)
    cxx = opt + ["-fopenmp", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
           "-Wno-maybe-uninitialized"]
    if not with_cuda:
        return CppExtension(
            "effdl._C", sources, define_macros=macros, extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"]
        )
    archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cpp"))
    macros += [("EFFDL_WITH_CUDA", None), ("EFFDL_CUDA_ARCHS", f'"{archs}"')]
    nvcc = opt + [
        "--Werror=all-warnings",
        "-Xcompiler=-Wall,-Werror,-Wno-unused-parameter,-Wno-maybe-uninitialized",
        "--expt-relaxed-constexpr",
    ]
    return CUDAExtension(
        "effdl._C",
        sources,
        define_macros=macros,
        include_dirs=_nvidia_wheel_includes(),
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=["-fopenmp"],
    )


def main() -> None:
    _resolve_cuda_home()
    from torch.utils.cpp_extension import BuildExtension

    setup(
        ext_modules=[_extension()],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)},
    )


if __name__ == "__main__":
    main()
