"""Loads the native extension. Never raises: a missing or broken ``_C`` is
recorded here, reported by :func:`effdl.info`, and the ops fall back to the
pure-PyTorch reference with a one-time warning."""

from __future__ import annotations

import importlib.util
from functools import cache

import torch  # also: the extension links against torch's libraries, load it first

C = None
load_error: str | None = None
if importlib.util.find_spec("effdl._C") is None:
    load_error = "effdl._C is not built (pip install --no-build-isolation -e .)"
else:
    try:
        from effdl import _C as C  # registers torch.ops.effdl.* (TORCH_LIBRARY)
    except (ImportError, OSError) as exc:  # e.g. built against another torch
        load_error = f"{type(exc).__name__}: {exc}"


def available() -> bool:
    """True when the native extension loaded."""
    return C is not None


@cache  # fixed at build time; asked on every op call by the backend selection
def build_info() -> dict:
    return dict(C.build_info()) if C is not None else {"cuda": False, "cuda_archs": ""}


@cache
def cpu_features() -> dict:
    return dict(C.cpu_features()) if C is not None else {}


def cpu_isa() -> dict:
    """The CPU kernel level in use: ``isa`` (None when ``EFFDL_CPU_ISA`` asks for a level that
    cannot run here, with the reason in ``error``), ``forced``, ``requested``, ``available``.
    Not cached: the native side decides once per process and always answers the same."""
    if C is None:  # no native kernels at all: info() reports that under "native"
        return {"isa": None, "forced": False, "requested": "", "error": None, "available": []}
    return dict(C.cpu_isa())


def cpu_peak_rate(kind: str, seconds: float = 0.2) -> float | None:
    """Measured peak operations/s (a multiply-add is 2) of ``kind`` — ``"fp32_fma"``,
    ``"int8_dot"`` or ``"bf16_dot"`` — summed over ``torch.get_num_threads()`` threads,
    each running a register-only loop for about ``seconds`` at the CPU kernel level in
    use. None where that level has no instruction for it, or without the extension."""
    return None if C is None else C.cpu_peak_rate(kind, seconds)


@cache  # the kernel level is chosen once per process; asked on every SparseLinear forward
def nm_packed_min_rows(dtype: torch.dtype) -> int:
    """Rows of x from which :func:`effdl.ops.nm_linear_packed` beats :func:`effdl.ops.nm_linear` on
    2:4 weights of ``dtype`` at the CPU kernel level in use; -1 where it never does (that level has
    no vector kernel for the packed layout), or without the extension."""
    return -1 if C is None else int(C.nm_packed_min_rows(str(dtype).removeprefix("torch.")))
