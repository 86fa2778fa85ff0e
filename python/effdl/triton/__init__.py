"""Triton kernels of every effdl operator (the portable GPU backend).

``effdl.triton.<op>`` has the signature, checks and results of
``effdl.ops.<op>``; each is also the custom op ``torch.ops.effdl_triton.<op>``,
registered with :func:`torch.library.triton_op` so ``torch.compile`` traces into
the kernels. ``effdl.set_backend("triton")`` (or ``EFFDL_BACKEND=triton``) routes
the effdl ops here; ``"auto"`` does on CUDA tensors where no native kernel is
validated. Kernels run on CUDA tensors, or on CPU tensors in triton's interpreter
(``TRITON_INTERPRET=1`` set before this package is imported; slow, for tests).
Importing this package needs the ``triton`` package.
"""

from __future__ import annotations

try:
    import triton  # noqa: F401
except ImportError as exc:
    raise ImportError("effdl.triton needs the triton package (pip install triton)") from exc

from effdl.triton._runtime import INTERPRETED
from effdl.triton.dwsep import dwsep_conv2d
from effdl.triton.int8 import int8_linear, int8_weight_linear, quantize_rows
from effdl.triton.nm import nm_compress, nm_decompress, nm_linear
from effdl.triton.nm_int8 import nm_int8_linear

__all__ = [
    "INTERPRETED",
    "dwsep_conv2d",
    "int8_linear",
    "int8_weight_linear",
    "nm_compress",
    "nm_decompress",
    "nm_int8_linear",
    "nm_linear",
    "quantize_rows",
]
