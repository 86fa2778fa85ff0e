"""What every Triton kernel of effdl shares: launch configs, op registration,
the device rule and the failure flag through which kernels report bad data.

Kernels are JIT-compiled for CUDA tensors; under ``TRITON_INTERPRET=1`` (read by
triton when a kernel is defined, i.e. when :mod:`effdl.triton` is first
imported) they run in triton's interpreter on CPU tensors — slow, for tests.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import torch
import triton
from triton.runtime.jit import JITFunction

NAMESPACE = "effdl_triton"


@triton.jit
def _probe():
    pass


# triton.jit returns an InterpretedFunction instead of a JITFunction under TRITON_INTERPRET=1
INTERPRETED = not isinstance(_probe, JITFunction)


def configs(gpu: list[triton.Config], interpreter: dict[str, int]) -> list[triton.Config]:
    """The autotuning space: ``gpu`` when compiling, one small config in the interpreter
    (which runs each program in Python: one config, no tuning runs, few programs)."""
    return [triton.Config(interpreter)] if INTERPRETED else gpu


def check_device(t: torch.Tensor, op: str) -> None:
    """Triton kernels need CUDA tensors, or CPU tensors in the interpreter."""
    if t.device.type in ("cuda", "meta") or (t.device.type == "cpu" and INTERPRETED):
        return
    raise RuntimeError(
        f"effdl.{op}: the Triton kernels run on CUDA tensors (CPU tensors only in the Triton interpreter: "
        f"TRITON_INTERPRET=1 set before effdl.triton is imported), got a tensor on {t.device}"
    )


def tile_grid(M: int, N: int, block_m: str = "BLOCK_M", block_n: str = "BLOCK_N") -> Callable[[dict], tuple[int, int]]:
    """The launch grid of an ``M x N`` output in tiles of the chosen config's blocks."""
    return lambda meta: (triton.cdiv(M, meta[block_m]), triton.cdiv(N, meta[block_n]))


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """``t[*, K]`` as ``[rows, K]``: a view where the strides allow, and K may be 0."""
    return t.unsqueeze(0) if t.dim() == 1 else t.flatten(0, -2)


# ---------------------------------------------------------------- op registration

_no_launch = threading.local()


@contextlib.contextmanager
def _launches_skipped():
    _no_launch.active = True
    try:
        yield
    finally:
        _no_launch.active = False


class _NoLaunch:
    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def wrap_triton(kernel):
    """:func:`torch.library.wrap_triton`, except that the interpreter's fake pass launches nothing."""
    if getattr(_no_launch, "active", False):
        return _NoLaunch()
    return torch.library.wrap_triton(kernel)


def triton_op(name: str) -> Callable[[Callable], torch.library.CustomOpDef]:
    """Register ``fn`` as ``effdl_triton::<name>``.

    Compiled kernels: :func:`torch.library.triton_op`, so ``torch.compile`` sees
    the kernel launches and fuses around them. Interpreted kernels cannot be
    traced (they would run on fake tensors), so there the op is an opaque
    :func:`torch.library.custom_op` whose fake is the same body with the launches
    skipped: the same checks, output shapes and strides.
    """
    qualname = f"{NAMESPACE}::{name}"

    def register(fn: Callable) -> torch.library.CustomOpDef:
        if not INTERPRETED:
            return torch.library.triton_op(qualname, fn, mutates_args=())
        op = torch.library.custom_op(qualname, fn, mutates_args=())

        def fake(*args, **kwargs):
            with _launches_skipped():
                return fn(*args, **kwargs)

        op.register_fake(fake)
        return op

    return register


# ---------------------------------------------------------------- failures found on the device

NO_FAILURE = 2**31 - 1
_MESSAGES: dict[str, Callable[[int, list[int], torch.Tensor | None], str]] = {}


def failure_flag(like: torch.Tensor) -> torch.Tensor:
    """An int32 ``[1]`` flag on ``like``'s device; kernels ``atomic_min`` the first
    bad index (row, or row-major group) into it."""
    return torch.full((1,), NO_FAILURE, dtype=torch.int32, device=like.device)


def failure_message(op: str):
    """Register ``fn(index, args, data) -> str``: the error of ``op`` for a failure at ``index``."""

    def register(fn):
        _MESSAGES[op] = fn
        return fn

    return register


# The flag is declared mutated so that no compiler drops the check as dead code;
# the check is a host sync, like the native CUDA kernels' own.
@torch.library.custom_op(f"{NAMESPACE}::raise_on_failure", mutates_args=("failure",))
def raise_on_failure(failure: torch.Tensor, op: str, args: list[int], data: torch.Tensor | None = None) -> None:
    """Raise ``RuntimeError`` with ``op``'s message when a kernel flagged bad input."""
    index = int(failure.item())
    if index != NO_FAILURE:
        raise RuntimeError(_MESSAGES[op](index, args, data))


@raise_on_failure.register_fake
def _(failure, op, args, data=None):
    return None
