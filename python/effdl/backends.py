"""Which backends exist, and which one an op uses.

Backends: ``"cpu"`` / ``"cuda"`` (the native kernels of ``effdl._C``),
``"reference"`` (pure PyTorch, :mod:`effdl.reference`) and ``"auto"`` (the
default): the native kernel of the tensor's device where it is built and — on a
GPU — validated on that architecture (``validated.json``), else the reference
with a one-time warning. ``effdl.set_backend(name)`` or the ``EFFDL_BACKEND``
environment variable forces one. Triton kernels are not part of this release;
asking for ``"triton"`` raises.
"""

from __future__ import annotations

import json
import os
import warnings
from functools import cache
from pathlib import Path

import torch

from effdl import _ext

BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")
OPS = (
    "nm_compress",
    "nm_decompress",
    "nm_linear",
    "quantize_rows",
    "int8_linear",
    "nm_int8_linear",
    "int8_weight_linear",
    "dwsep_conv2d",
)
# ops whose native kernels exist for the CPU only: on a GPU "auto" takes the reference
CPU_ONLY_OPS = frozenset({"nm_int8_linear"})

_backend = "auto"
_warned: set[tuple[str, str]] = set()


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"effdl backend must be one of {BACKENDS}, got {name!r}")
    if name == "triton":
        raise ValueError("effdl: the 'triton' backend has no kernels in this release; use 'auto', 'cpu', 'cuda' or 'reference'")
    return name


def set_backend(name: str) -> None:
    """Force the backend of every effdl op and module: one of :data:`BACKENDS`."""
    global _backend
    _backend = _check_name(name)


def get_backend() -> str:
    """The backend in force (``EFFDL_BACKEND`` overrides the default ``"auto"``)."""
    env = os.environ.get("EFFDL_BACKEND")
    return _check_name(env) if env and _backend == "auto" else _backend


@cache
def validated() -> dict[str, list[str]]:
    """op -> list of ``sm_XY`` architectures where its CUDA kernel passed the device check."""
    data = json.loads((Path(__file__).with_name("validated.json")).read_text())
    return {op: list(archs) for op, archs in data.get("cuda", {}).items()}


def cuda_arch(device: torch.device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def native_built(device_type: str) -> bool:
    """Whether ``effdl._C`` holds kernels for ``"cpu"`` or ``"cuda"``."""
    if not _ext.available():
        return False
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return bool(_ext.build_info().get("cuda"))
    return False


def _warn_once(op: str, why: str) -> None:
    if (op, why) not in _warned:
        _warned.add((op, why))
        warnings.warn(f"effdl.{op}: using the pure-PyTorch reference ({why})", RuntimeWarning, stacklevel=4)


def select(op: str, device: torch.device) -> str:
    """``"native"`` or ``"reference"`` for ``op`` on ``device`` under the backend in force."""
    if device.type == "meta" and _ext.available():
        return "native"  # shapes only: the registered fake answers
    backend = get_backend()
    if backend == "reference":
        return "reference"
    if backend in ("cpu", "cuda"):
        if device.type != backend:
            raise RuntimeError(f"effdl.{op}: backend {backend!r} is forced but the input is on {device}")
        if backend == "cuda" and op in CPU_ONLY_OPS:
            raise RuntimeError(f"effdl.{op} has no CUDA kernel yet (CPU only in this release); "
                               "use the 'auto' or 'reference' backend on CUDA tensors")
        if not native_built(backend):
            raise RuntimeError(f"effdl.{op}: backend {backend!r} is forced but effdl._C has no {backend} kernels ({describe_build()})")
        return "native"
    # auto
    if not native_built(device.type):
        _warn_once(op, f"no native {device.type} kernel: {describe_build()}")
        return "reference"
    if device.type == "cuda":
        if op in CPU_ONLY_OPS:
            _warn_once(op, "it has no CUDA kernel yet")
            return "reference"
        arch = cuda_arch(device)
        if arch not in validated().get(op, []):
            _warn_once(op, f"its CUDA kernel is not validated on {arch}; set_backend('cuda') forces it")
            return "reference"
    return "native"


def describe_build() -> str:
    if not _ext.available():
        return f"native extension not loaded: {_ext.load_error}"
    info = _ext.build_info()
    return "cpu" + (f" + cuda ({info.get('cuda_archs')})" if info.get("cuda") else " only")


def op_backends() -> dict[str, dict[str, str]]:
    """op -> backend -> status, for :func:`effdl.info`."""
    table: dict[str, dict[str, str]] = {}
    cuda_built = native_built("cuda")
    for op in OPS:
        archs = validated().get(op, [])
        table[op] = {
            "cpu": "yes" if native_built("cpu") else "not built",
            "cuda": "no kernel (CPU only)" if op in CPU_ONLY_OPS
            else ("validated " + ",".join(archs) if archs else "built, not validated") if cuda_built else "not built",
            "triton": "not in this release",
            "reference": "yes",
        }
    return table
