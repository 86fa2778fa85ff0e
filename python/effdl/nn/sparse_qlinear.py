"""``SparseQLinear``: an ``nn.Linear`` stored N:M sparse *and* int8 (2:4 + W8A8 by default)."""

from __future__ import annotations

import torch
from torch import nn

from effdl import _checks, backends, formats, ops
from effdl.nn._format import (
    FORMAT_VERSION,
    check_loaded_pattern,
    check_loaded_version,
    register_format_version,
)
from effdl.nn.qlinear import MODES
from effdl.nn.sparse_linear import SparseLinear


def _first_n_mask(rows: int, K: int, n: int, m: int, device) -> torch.Tensor:
    """A valid placeholder keep-mask: the first ``n`` columns of every group."""
    return (torch.arange(K, device=device) % m < n).expand(rows, K)


class SparseQLinear(nn.Module):
    """Inference-only N:M-sparse int8 linear layer: ``y = x @ W.T + bias``.

    ``W [out_features, in_features]`` is N:M sparse along ``in_features`` and its
    kept values are int8 with one symmetric scale per output channel, computed over
    the kept values only (``w_scale = max|kept| / 127``). Buffers (the canonical
    format, what ``state_dict`` holds):

    * ``values_q`` int8 ``[out_features, in_features*n/m]``: the kept weights, in
      the :mod:`effdl.formats` order;
    * ``meta`` uint8 ``[out_features, ceil(in_features/8)]``: the keep-mask;
    * ``w_scale`` float32 ``[out_features]``; ``bias`` float32 ``[out_features]`` or None;
    * ``nm_pattern`` int32 ``[n, m]`` and ``format_version``.

    Modes:
        ``"dynamic"`` (W8A8): each input row is quantized on the fly
        (:func:`effdl.ops.quantize_rows`) and multiplied with the kept int8 weights
        only, summed exactly in int32 (:func:`effdl.ops.nm_int8_linear`).
        ``"weight_only"``: float activations; the kept weights are dequantized on
        each call (``[out_features, in_features*n/m]`` floats, the size of the
        layer's sparse weight) and multiplied by :func:`effdl.ops.nm_linear`.
        Storage is int8 either way; there is no fused weight-only kernel yet.

    Input ``[*, in_features]`` float32/bfloat16/float16 (weight-only also float64);
    output ``[*, out_features]`` in the input's dtype. ``in_features`` must be a
    multiple of ``m``. The N:M int8 kernel is native on the CPU and on CUDA (2:4 on
    sparse int8 tensor cores, sm_80+); on CUDA tensors the ``"auto"`` backend runs the
    native kernel where it is validated for the GPU, else its Triton kernel.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        n: int = 2,
        m: int = 4,
        mode: str = "dynamic",
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        formats.check_pattern(n, m)
        if mode not in MODES:
            raise ValueError(f"SparseQLinear: mode must be one of {MODES}, got {mode!r}")
        if in_features % m:
            raise ValueError(
                f"SparseQLinear: in_features={in_features} must be a multiple of m={m} for {n}:{m} sparsity"
            )
        self.in_features, self.out_features, self.n, self.m, self.mode = in_features, out_features, n, m, mode
        kept = in_features // m * n
        # a valid all-zero weight (first n columns of each group kept), so a fresh
        # module computes `bias` rather than failing on an empty mask
        meta = torch.empty(out_features, formats.meta_bytes(in_features), dtype=torch.uint8, device=device)
        if meta.device.type != "meta" and out_features and in_features:
            meta = formats.pack_mask(_first_n_mask(out_features, in_features, n, m, meta.device))
        elif meta.device.type != "meta":
            meta.zero_()
        self.register_buffer("values_q", torch.zeros(out_features, kept, dtype=torch.int8, device=device))
        self.register_buffer("meta", meta)
        self.register_buffer("w_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device))
        else:
            self.bias = None
        self.register_buffer("nm_pattern", torch.tensor([n, m], dtype=torch.int32, device=device))
        register_format_version(self)
        if device is not None:
            self.format_version = self.format_version.to(device)

    # ---------------------------------------------------------------- construction

    @classmethod
    def _from_nm(cls, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None, in_features: int,
                 n: int, m: int, mode: str) -> SparseQLinear:
        """Quantize the kept ``values [out, in*n/m]`` per row (over the kept values only)."""
        out_features = values.shape[0]
        mod = cls(in_features, out_features, bias is not None, n, m, mode, device="meta")
        values_q, w_scale = ops.quantize_rows(values.detach().float())
        device = values.device
        mod.values_q, mod.w_scale, mod.meta = values_q, w_scale, meta.detach().clone()
        if bias is not None:
            mod.bias = bias.detach().float().clone()
        mod.nm_pattern = torch.tensor([n, m], dtype=torch.int32, device=device)
        mod.format_version = torch.tensor(FORMAT_VERSION, dtype=torch.int32, device=device)
        return mod

    @classmethod
    def from_float(cls, linear: nn.Linear, n: int = 2, m: int = 4, mode: str = "dynamic") -> SparseQLinear:
        """Prune an ``nn.Linear`` to N:M by magnitude (unless its weight is N:M
        already), then quantize the kept weights per output channel."""
        return cls.from_sparse(SparseLinear.from_dense(linear, n, m), mode)

    @classmethod
    def from_sparse(cls, sparse: SparseLinear, mode: str = "dynamic") -> SparseQLinear:
        """Quantize a :class:`SparseLinear`'s kept weights per output channel; its
        sparsity pattern (``meta``) is kept as it is."""
        if not isinstance(sparse, SparseLinear):
            raise TypeError(f"SparseQLinear.from_sparse: expected an effdl.nn.SparseLinear, got {type(sparse).__name__}")
        return cls._from_nm(sparse.values, sparse.meta, sparse.bias, sparse.in_features, sparse.n, sparse.m, mode)

    # ---------------------------------------------------------------- views of the weight

    def dequantized_values(self) -> torch.Tensor:
        """The kept weights as float32 ``values_q * w_scale[:, None]``, ``[out, in*n/m]``."""
        return self.values_q.float() * self.w_scale[:, None]

    def dequantized_weight(self) -> torch.Tensor:
        """The dense float32 ``[out_features, in_features]`` weight this layer computes with (zeros where pruned)."""
        return ops.nm_decompress(self.dequantized_values(), self.meta, self.n, self.m)

    def to_float(self) -> nn.Linear:
        """An ``nn.Linear`` holding the dequantized dense weight."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.values_q.device)
        with torch.no_grad():
            lin.weight.copy_(self.dequantized_weight())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def to_sparse(self) -> SparseLinear:
        """A float32 :class:`SparseLinear` with the dequantized kept weights and the same ``meta``
        (kept weights that quantized to 0 stay kept positions)."""
        device = self.values_q.device
        mod = SparseLinear(self.in_features, self.out_features, self.bias is not None, self.n, self.m, device="meta")
        mod.values = nn.Parameter(self.dequantized_values())
        mod.meta = self.meta.clone()
        if self.bias is not None:
            mod.bias = nn.Parameter(self.bias.clone())
        mod.nm_pattern = self.nm_pattern.clone()
        mod.format_version = torch.tensor(FORMAT_VERSION, dtype=torch.int32, device=device)
        return mod

    # ---------------------------------------------------------------- module plumbing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "dynamic":
            q, q_scale = ops.quantize_rows(x)
            return ops.nm_int8_linear(q, q_scale, self.values_q, self.meta, self.n, self.m, self.w_scale, self.bias,
                                      out_dtype=x.dtype)
        values = self.dequantized_values().to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return ops.nm_linear(x, values, self.meta, self.n, self.m, bias)

    def _apply(self, fn, recurse=True):
        # .half() / .to(bfloat16) must not round the scales and bias: they stay
        # float32 (the int8 format), only their device follows the module
        keep = {name: getattr(self, name) for name in ("w_scale", "bias") if getattr(self, name) is not None}
        super()._apply(fn, recurse)
        for name, original in keep.items():
            setattr(self, name, original.to(device=getattr(self, name).device, dtype=torch.float32))
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_loaded_version(type(self).__name__, state_dict, prefix)
        check_loaded_pattern(type(self).__name__, state_dict, prefix, self.n, self.m)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        op = "nm_int8_linear" if self.mode == "dynamic" else "nm_linear"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"sparsity={self.n}:{self.m}, mode={self.mode}, weight=int8 per-channel, backend={backends.describe(op, self.values_q.device)}"
        )


def sparse_int8_incompatibility(sparse: SparseLinear, mode: str) -> str | None:
    """Why a :class:`SparseLinear` cannot become a :class:`SparseQLinear` in ``mode`` (None if it can)."""
    if sparse.values.dtype not in _checks.ACT_FLOATS:
        return f"dtype {sparse.values.dtype} unsupported by the int8 kernels"
    if mode == "dynamic" and sparse.values.shape[1] > _checks.INT8_MAX_K:
        return "in_features*n/m above the int32-exact bound"
    return None
