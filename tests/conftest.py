"""Shared fixtures: seeding, the ``cuda`` marker, the device list."""

from __future__ import annotations

import os
import random

import pytest
import torch

import effdl  # noqa: F401  (loads effdl._C, which registers torch.ops.effdl.*)

HAS_CUDA = torch.cuda.is_available()

# Without a GPU the Triton kernels (effdl.triton) run on CPU tensors in triton's interpreter, which
# triton picks when a kernel is defined: the variable must be set before effdl.triton is imported.
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

NO_CUDA_REASON = "no CUDA GPU"

# devices every device-parametrized test runs on here
devices = ["cpu"] + (["cuda"] if HAS_CUDA else [])

# for parametrize: the cuda entry is always collected, and skipped with its reason where no GPU exists
DEVICE_PARAMS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda, id="cuda")]


def pytest_configure(config):
    # pyproject declares the marker too; this keeps the suite self-contained
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped with the reason where none is present)")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason=NO_CUDA_REASON)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"effdl devices: {devices}" + ("" if HAS_CUDA else f" (cuda-marked tests skip: {NO_CUDA_REASON})")


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same random state, whatever ran before it."""
    random.seed(0)
    torch.manual_seed(0)
    return 0


@pytest.fixture(params=DEVICE_PARAMS)
def device(request) -> str:
    return request.param
