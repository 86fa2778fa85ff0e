"""effdl: compressed PyTorch models that are really smaller and faster.

Operators live in ``torch.ops.effdl`` (typed wrappers in :mod:`effdl.ops`),
drop-in modules in :mod:`effdl.nn`, and one-call model conversion in
:func:`sparsify_`, :func:`quantize_` and :func:`fuse_dwsep_`. The compression
algorithms that produce what those kernels run: :mod:`effdl.prune`,
:mod:`effdl.quant`, :mod:`effdl.distill`, and the efficient architectures of
:mod:`effdl.models`. The Triton kernels (:mod:`effdl.triton`) are imported on
first use: triton reads ``TRITON_INTERPRET`` when they are defined.
"""

from effdl import (  # noqa: F401  (_ext loads the kernels first)
    _ext,
    data,
    distill,
    formats,
    models,
    ops,
    plan,
    prune,
    quant,
    reference,
    serialize,
    training,
)
from effdl.backends import get_backend, set_backend
from effdl.convert import fuse_dwsep_, quantize_, sparsify_
from effdl.info import info
from effdl.ops import (
    dwsep_conv2d,
    int8_linear,
    int8_linear_packed,
    int8_pack_weight,
    int8_weight_linear,
    nm_compress,
    nm_decompress,
    nm_int8_linear,
    nm_linear,
    nm_linear_packed,
    nm_pack_weight,
    quantize_rows,
)
from effdl.plan import apply_plan, make_plan
from effdl.serialize import load, save

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "apply_plan",
    "data",
    "distill",
    "dwsep_conv2d",
    "formats",
    "fuse_dwsep_",
    "get_backend",
    "info",
    "int8_linear",
    "int8_linear_packed",
    "int8_pack_weight",
    "int8_weight_linear",
    "load",
    "make_plan",
    "models",
    "nm_compress",
    "nm_decompress",
    "nm_int8_linear",
    "nm_linear",
    "nm_linear_packed",
    "nm_pack_weight",
    "ops",
    "plan",
    "prune",
    "quant",
    "quantize_",
    "quantize_rows",
    "reference",
    "save",
    "serialize",
    "set_backend",
    "sparsify_",
    "training",
]


def __getattr__(name: str):
    # effdl.triton imports triton and defines its kernels: only when first asked for
    if name == "triton":
        import importlib

        return importlib.import_module("effdl.triton")
    raise AttributeError(f"module 'effdl' has no attribute {name!r}")

