"""``torch.library.opcheck`` on the samples of every effdl operator.

opcheck runs the schema, fake-tensor, autograd-registration and AOT-dispatch
tests: it catches a fake that disagrees with the kernel (shape, dtype, strides),
an op that mutates or aliases its inputs, and a broken autograd registration.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from samples import DIFF_ARGNUMS, DTYPES, OPS, sample_inputs

import effdl  # noqa: F401

# the AOT-dispatch test with gradients compiles a backward graph: seconds per sample,
# so gradients go on the first few float32 samples only
GRAD_SAMPLES = 2
# samples per op for the dtypes other than float32
OTHER_DTYPE_SAMPLES = 2


def _with_grad(op: str, args: tuple) -> tuple:
    args = list(args)
    for i in DIFF_ARGNUMS[op]:
        if args[i] is not None:
            args[i] = args[i].detach().clone().requires_grad_(True)
    return tuple(args)


def _cases():
    for op in OPS:
        count = sum(1 for _ in sample_inputs(op, "cpu", torch.float32))
        for i in range(count):
            yield pytest.param(op, torch.float32, i, False, id=f"{op}-float32-{i}")
            if op in DIFF_ARGNUMS and i < GRAD_SAMPLES:
                yield pytest.param(op, torch.float32, i, True, id=f"{op}-float32-{i}-grad")
        for dtype in DTYPES[op]:
            if dtype != torch.float32:
                for i in range(OTHER_DTYPE_SAMPLES):
                    yield pytest.param(op, dtype, i, False, id=f"{op}-{str(dtype)[6:]}-{i}")


@pytest.mark.parametrize(("op", "dtype", "index", "grad"), list(_cases()))
def test_opcheck(op, dtype, index, grad):
    args = next(itertools.islice(sample_inputs(op, "cpu", dtype), index, None))
    if grad:
        args = _with_grad(op, args)
    torch.library.opcheck(getattr(torch.ops.effdl, op), args)


@pytest.mark.cuda
@pytest.mark.parametrize("op", OPS)
def test_opcheck_cuda(op):
    for args in itertools.islice(sample_inputs(op, "cuda", torch.float32), 3):
        torch.library.opcheck(getattr(torch.ops.effdl, op), args)


def _registered_ops() -> set[str]:
    names = torch._C._dispatch_get_all_op_names()
    return {name.split("::", 1)[1].split(".")[0] for name in names if name.startswith("effdl::")}


def test_every_registered_op_has_samples():
    registered = _registered_ops()
    assert registered, "no operator registered under torch.ops.effdl: effdl._C did not load"
    missing = sorted(op for op in registered if op not in OPS)
    assert not missing, f"effdl ops without an opcheck sample in tests/samples.py: {missing}"
    for op in sorted(registered):
        assert any(True for _ in sample_inputs(op, "cpu", torch.float32)), f"effdl.{op}: no float32 sample"


def test_samples_cover_only_registered_ops():
    stale = sorted(set(OPS) - _registered_ops())
    assert not stale, f"tests/samples.py has samples for ops that are not registered: {stale}"


@pytest.mark.parametrize("op", OPS)
def test_samples_are_fresh_and_nonzero(op):
    """Two draws differ (fresh random data) and no float input is all zeros."""
    first = list(sample_inputs(op, "cpu", torch.float32))
    second = list(sample_inputs(op, "cpu", torch.float32))
    assert len(first) >= 5
    differs = False
    for a, b in zip(first, second, strict=True):
        for s, t in zip(a, b, strict=True):
            if isinstance(s, torch.Tensor) and s.numel():
                assert s.count_nonzero() > 0 or s.dtype == torch.uint8
                differs |= not torch.equal(s.nan_to_num(), t.nan_to_num())
    assert differs
