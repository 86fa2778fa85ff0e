"""``SparseLinear``: an ``nn.Linear`` whose weight is stored and multiplied N:M sparse."""

from __future__ import annotations

import math

import torch
from torch import nn

from effdl import _ext, backends, formats, ops
from effdl.nn._format import (
    FORMAT_VERSION,
    check_loaded_pattern,
    check_loaded_version,
    register_format_version,
)


class SparseLinear(nn.Module):
    """``y = x @ W.T + bias`` with ``W [out_features, in_features]`` N:M sparse.

    Holds the canonical N:M storage of :mod:`effdl.formats`: the trainable
    parameter ``values [out_features, in_features*n/m]``, the uint8 buffer
    ``meta [out_features, ceil(in_features/8)]`` (the fixed sparsity pattern),
    ``bias [out_features]`` and the ``nm_pattern`` / ``format_version`` buffers.
    Training updates only kept weights, so fine-tuning keeps the pattern.
    ``in_features`` must be a multiple of ``m``.

    Input ``[*, in_features]`` in the parameters' dtype; output ``[*, out_features]``.

    On CPU, for 2:4 weights, inference (no gradient to compute) and at least
    ``effdl._ext.nm_packed_min_rows(dtype)`` rows of input, the layer multiplies
    with the weight prepacked by :func:`effdl.ops.nm_pack_weight` (today: bfloat16
    on the ``avx512_bf16`` CPU level, from 13 rows): packed on first use, cached
    per device, repacked whenever ``values`` or ``meta`` is replaced or modified in
    place (their version counters; writes through ``.data`` bypass them, so call
    :meth:`drop_packed_weight` after those), never part of ``state_dict``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        n: int = 2,
        m: int = 4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        formats.check_pattern(n, m)
        if in_features % m:
            raise ValueError(
                f"SparseLinear: in_features={in_features} must be a multiple of m={m} for {n}:{m} sparsity"
            )
        self.in_features, self.out_features, self.n, self.m = in_features, out_features, n, m
        # nn.Linear's initialisation, then the magnitude N:M mask
        dense = torch.empty(out_features, in_features, device=device, dtype=dtype or torch.get_default_dtype())
        if dense.device.type == "meta":  # shapes only (from_dense installs the real tensors)
            values = dense.new_empty(out_features, in_features // m * n)
            meta = dense.new_empty(out_features, formats.meta_bytes(in_features), dtype=torch.uint8)
        else:
            nn.init.kaiming_uniform_(dense, a=math.sqrt(5))
            values, meta = ops.nm_compress(dense * formats.nm_mask(dense, n, m), n, m)
        self.values = nn.Parameter(values)
        self.register_buffer("meta", meta)
        if bias:
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dense.dtype).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("nm_pattern", torch.tensor([n, m], dtype=torch.int32, device=dense.device))
        register_format_version(self)
        self.format_version = self.format_version.to(dense.device)
        self._packed: dict[torch.device, tuple] = {}

    @classmethod
    def from_dense(cls, linear: nn.Linear, n: int = 2, m: int = 4) -> SparseLinear:
        """Convert an ``nn.Linear``. A weight that is not N:M sparse yet is pruned by
        magnitude within each group of ``m`` (:func:`effdl.formats.nm_mask`)."""
        w = linear.weight.detach()
        # build on the meta device (no allocation), then install the real tensors
        mod = cls(linear.in_features, linear.out_features, linear.bias is not None, n, m, device="meta", dtype=w.dtype)
        if bool(((w != 0).reshape(w.shape[0], w.shape[1] // m, m).sum(-1) > n).any()):
            w = w * formats.nm_mask(w, n, m)
        values, meta = ops.nm_compress(w, n, m)
        mod.values = nn.Parameter(values, requires_grad=linear.weight.requires_grad)
        mod.meta = meta
        if linear.bias is not None:
            mod.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=linear.bias.requires_grad)
        mod.nm_pattern = torch.empty_like(mod.nm_pattern, device=w.device).copy_(torch.tensor([n, m]))
        mod.format_version = torch.empty_like(mod.format_version, device=w.device).fill_(int(FORMAT_VERSION))
        return mod

    def dense_weight(self) -> torch.Tensor:
        """The dense ``[out_features, in_features]`` weight (zeros where pruned)."""
        return ops.nm_decompress(self.values.detach(), self.meta, self.n, self.m)

    def to_dense(self) -> nn.Linear:
        """An equivalent ``nn.Linear``."""
        w = self.dense_weight()
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def _apply(self, fn, recurse=True):
        self.drop_packed_weight()  # a new device or dtype needs a new packing
        return super()._apply(fn, recurse)

    def drop_packed_weight(self) -> None:
        """Forget the cached prepacked weights (the next packed forward repacks)."""
        self._packed = {}

    def packed_weight(self) -> torch.Tensor:
        """``nm_pack_weight(values, meta)``, cached per device while both are the same tensors at the
        same versions. 2:4 only."""
        values, meta = self.values, self.meta
        if "_packed" not in self.__dict__:  # a module unpickled from before the cache existed
            self._packed = {}
        cached = self._packed.get(values.device)
        if (cached is not None and cached[0] is values and cached[1] == values._version and cached[2] is meta
                and cached[3] == meta._version):
            return cached[4]
        packed = ops.nm_pack_weight(values.detach(), meta, self.n, self.m)
        # holding the tensors themselves (not their addresses) keeps freed ones from matching new ones
        self._packed[values.device] = (values, values._version, meta, meta._version, packed)
        return packed

    def _uses_packed(self, x: torch.Tensor) -> bool:
        # the CPU kernels, eagerly (the cache is Python state: a compiled graph takes nm_linear),
        # without autograd (the packed op has none) and where the level's packed kernel pays
        if not (self.n == 2 and self.m == 4 and x.device.type == "cpu" and x.dtype == self.values.dtype
                and x.dim() >= 1 and x.shape[-1] == self.in_features and backends.get_backend() in ("auto", "cpu") and backends.native_built("cpu")
                and not torch.compiler.is_compiling()):
            return False
        params = (x, self.values) if self.bias is None else (x, self.values, self.bias)
        if torch.is_grad_enabled() and any(t.requires_grad for t in params):
            return False
        min_rows = _ext.nm_packed_min_rows(x.dtype)
        return 0 <= min_rows <= (x.numel() // self.in_features if self.in_features else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._uses_packed(x):
            return ops.nm_linear_packed(x, self.packed_weight(), self.out_features, self.bias)
        return ops.nm_linear(x, self.values, self.meta, self.n, self.m, self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_loaded_version(type(self).__name__, state_dict, prefix)
        check_loaded_pattern(type(self).__name__, state_dict, prefix, self.n, self.m)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        kernel = backends.describe("nm_linear", self.values.device)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"sparsity={self.n}:{self.m}, dtype={self.values.dtype}, backend={kernel}"
        )
