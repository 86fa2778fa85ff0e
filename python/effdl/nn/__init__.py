"""Drop-in modules backed by effdl's kernels."""

from effdl.nn.dwsep import DWSeparableConv2d
from effdl.nn.qlinear import QLinear
from effdl.nn.sparse_linear import SparseLinear
from effdl.nn.sparse_qlinear import SparseQLinear

__all__ = ["DWSeparableConv2d", "QLinear", "SparseLinear", "SparseQLinear"]
