"""effdl: compressed PyTorch models that are really smaller and faster.

Operators live in ``torch.ops.effdl`` (typed wrappers in :mod:`effdl.ops`),
drop-in modules in :mod:`effdl.nn`, and one-call model conversion in
:func:`sparsify_`, :func:`quantize_` and :func:`fuse_dwsep_`.
"""

from effdl import _ext, formats, ops, reference  # noqa: F401  (_ext loads the kernels first)
from effdl.backends import get_backend, set_backend
from effdl.convert import fuse_dwsep_, quantize_, sparsify_
from effdl.info import info
from effdl.ops import (
    dwsep_conv2d,
    int8_linear,
    int8_weight_linear,
    nm_compress,
    nm_decompress,
    nm_linear,
    quantize_rows,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "dwsep_conv2d",
    "formats",
    "fuse_dwsep_",
    "get_backend",
    "info",
    "int8_linear",
    "int8_weight_linear",
    "nm_compress",
    "nm_decompress",
    "nm_linear",
    "ops",
    "quantize_",
    "quantize_rows",
    "reference",
    "set_backend",
    "sparsify_",
]
