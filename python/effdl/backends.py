"""Which backends exist, and which one an op uses.

Backends: ``"cpu"`` / ``"cuda"`` (the native kernels of ``effdl._C``),
``"triton"`` (:mod:`effdl.triton`: CUDA tensors, or CPU tensors in triton's
interpreter under ``TRITON_INTERPRET=1``), ``"reference"`` (pure PyTorch,
:mod:`effdl.reference`) and ``"auto"`` (the default). ``auto`` takes the native
kernel of the tensor's device where it is built and — on a GPU — validated on
that architecture (``validated.json``); on a GPU without one, the Triton kernel
when triton is installed; else the reference with a one-time warning.
``effdl.set_backend(name)`` or the ``EFFDL_BACKEND`` environment variable forces one.
"""

from __future__ import annotations

import importlib.util
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
    "nm_pack_weight",
    "nm_linear_packed",
    "quantize_rows",
    "int8_linear",
    "int8_pack_weight",
    "int8_linear_packed",
    "nm_int8_linear",
    "int8_weight_linear",
    "dwsep_conv2d",
)
# ops on the CPU's own packed weight layouts: no GPU kernel of any kind (GPUs run int8_linear
# and nm_linear on the canonical tensors)
CPU_LAYOUT_OPS = frozenset({"int8_pack_weight", "int8_linear_packed", "nm_pack_weight", "nm_linear_packed"})
# ops whose native kernels exist for the CPU only (today exactly the CPU-layout ops): on a GPU
# "auto" takes Triton where it has a kernel, else the reference
CPU_ONLY_OPS = CPU_LAYOUT_OPS
# the ops with a kernel in effdl.triton
TRITON_OPS = tuple(op for op in OPS if op not in CPU_LAYOUT_OPS)

_backend = "auto"
_warned: set[tuple[str, str]] = set()


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"effdl backend must be one of {BACKENDS}, got {name!r}")
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
def validated(kernels: str = "cuda") -> dict[str, list[str]]:
    """op -> list of ``sm_XY`` architectures where its ``"cuda"`` (or ``"triton"``) kernel
    passed the device check."""
    data = json.loads((Path(__file__).with_name("validated.json")).read_text())
    return {op: list(archs) for op, archs in data.get(kernels, {}).items()}


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


@cache
def triton_installed() -> bool:
    """Whether the ``triton`` package can be imported (looked up, not imported)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreter_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for triton's interpreter (kernels on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def _check_triton(op: str, device: torch.device) -> None:
    """Raise unless the forced Triton backend can run ``op`` on ``device``."""
    if op not in TRITON_OPS:
        raise RuntimeError(f"effdl.{op}: backend 'triton' is forced but {op} has no Triton kernel; "
                           "use 'auto', 'cpu', 'cuda' or 'reference'")
    if not triton_installed():
        raise RuntimeError(f"effdl.{op}: backend 'triton' is forced but the triton package is not installed "
                           "(pip install triton)")
    if device.type == "cuda" or (device.type == "cpu" and triton_interpreter_requested()):
        return
    raise RuntimeError(f"effdl.{op}: backend 'triton' is forced but the input is on {device}: the Triton kernels "
                       "run on CUDA tensors, or on CPU tensors in triton's interpreter (TRITON_INTERPRET=1)")


def _warn_once(op: str, why: str) -> None:
    if (op, why) not in _warned:
        _warned.add((op, why))
        warnings.warn(f"effdl.{op}: using the pure-PyTorch reference ({why})", RuntimeWarning, stacklevel=4)


def _resolve(op: str, device: torch.device) -> tuple[str, str | None]:
    """``select``'s choice and, when ``auto`` falls back to the reference, why (no warning here)."""
    if device.type == "meta" and _ext.available():
        return "native", None  # shapes only: the registered fake answers
    backend = get_backend()
    if backend == "reference":
        return "reference", None
    if backend == "triton":
        _check_triton(op, device)
        return "triton", None
    if backend in ("cpu", "cuda"):
        if device.type != backend:
            raise RuntimeError(f"effdl.{op}: backend {backend!r} is forced but the input is on {device}")
        if backend == "cuda" and op in CPU_ONLY_OPS:
            raise RuntimeError(f"effdl.{op} has no CUDA kernel yet (CPU only in this release); "
                               "use the 'auto' or 'reference' backend on CUDA tensors")
        if not native_built(backend):
            raise RuntimeError(f"effdl.{op}: backend {backend!r} is forced but effdl._C has no {backend} kernels ({describe_build()})")
        return "native", None
    # auto
    if device.type == "cuda":
        arch = cuda_arch(device)
        if native_built("cuda") and arch in validated().get(op, []):
            return "native", None
        if op in TRITON_OPS and triton_installed():
            return "triton", None
        if op in CPU_ONLY_OPS:
            native = "it has no CUDA kernel yet"
        elif native_built("cuda"):
            native = f"its CUDA kernel is not validated on {arch} (set_backend('cuda') forces it)"
        else:
            native = f"no native cuda kernel: {describe_build()}"
        triton = "triton is not installed" if op in TRITON_OPS else "it has no Triton kernel"
        return "reference", f"{native}, and {triton}"
    if not native_built(device.type):
        return "reference", f"no native {device.type} kernel: {describe_build()}"
    return "native", None


def select(op: str, device: torch.device) -> str:
    """``"native"``, ``"triton"`` or ``"reference"`` for ``op`` on ``device`` under the backend in force."""
    choice, why = _resolve(op, device)
    if why is not None:
        _warn_once(op, why)
    return choice


def describe(op: str, device: torch.device | str) -> str:
    """The kernel ``op`` runs on ``device`` under the backend in force, in words, for the
    modules' ``repr``: e.g. ``"auto -> native cpu"``, ``"auto -> triton"``,
    ``"cuda (forced) -> native cuda"``, ``"auto -> reference (why)"``. Never raises
    or warns: a forced backend that cannot run here says so."""
    device = torch.device(device)
    backend = get_backend()
    if backend == "reference":
        return "reference (forced)"
    head = "auto" if backend == "auto" else f"{backend} (forced)"
    try:
        choice, why = _resolve(op, device)
    except RuntimeError as exc:
        return f"{head} -> unusable here: {exc}"
    if choice == "native":
        return f"{head} -> native {device.type}"
    return f"{head} -> {choice}" + (f" ({why})" if why else "")


def describe_build() -> str:
    if not _ext.available():
        return f"native extension not loaded: {_ext.load_error}"
    info = _ext.build_info()
    return "cpu" + (f" + cuda ({info.get('cuda_archs')})" if info.get("cuda") else " only")


def _triton_status(op: str) -> str:
    if op not in TRITON_OPS:
        return "no kernel"
    if not triton_installed():
        return "triton not installed"
    archs = validated("triton").get(op, [])
    return "validated " + ",".join(archs) if archs else "yes, not validated"


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
            "triton": _triton_status(op),
            "reference": "yes",
        }
    return table
