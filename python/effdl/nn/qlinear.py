"""``QLinear``: an int8 ``nn.Linear`` (W8A8 dynamic or int8 weight-only)."""

from __future__ import annotations

import torch
from torch import nn

from effdl import backends, ops
from effdl.nn._format import FORMAT_VERSION, check_loaded_version, register_format_version

MODES = ("dynamic", "weight_only")


class QLinear(nn.Module):
    """Inference-only int8 linear layer.

    Buffers (the canonical int8 format): ``wq`` int8 ``[out_features, in_features]``,
    ``w_scale`` float32 ``[out_features]`` (symmetric, per output channel),
    ``bias`` float32 ``[out_features]`` or None, and ``format_version``.

    Modes:
        ``"dynamic"``: W8A8 — each input row is quantized on the fly
        (:func:`effdl.ops.quantize_rows`) and multiplied in int8 with exact int32
        accumulation (:func:`effdl.ops.int8_linear`).
        ``"weight_only"``: float activations times int8 weights dequantized in
        registers (:func:`effdl.ops.int8_weight_linear`).

    Input ``[*, in_features]`` float32/bfloat16/float16; output ``[*, out_features]``
    in the input's dtype.

    On CPU the dynamic mode multiplies with ``wq`` prepacked into the panels of
    :func:`effdl.ops.int8_pack_weight`: packed on first use, cached per device,
    repacked whenever ``wq`` is replaced or modified in place (its version counter;
    writes through ``wq.data`` bypass it, so call :meth:`drop_packed_weight` after
    those), never part of ``state_dict``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        mode: str = "dynamic",
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"QLinear: mode must be one of {MODES}, got {mode!r}")
        self.in_features, self.out_features, self.mode = in_features, out_features, mode
        self.register_buffer("wq", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("w_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device))
        else:
            self.bias = None
        register_format_version(self)
        self._packed: dict[torch.device, tuple[torch.Tensor, int, torch.Tensor]] = {}
        if device is not None:
            self.format_version = self.format_version.to(device)

    @classmethod
    def from_float(cls, linear: nn.Linear, mode: str = "dynamic") -> QLinear:
        """Quantize an ``nn.Linear``'s weight per output channel:
        ``w_scale = max(|w_row|) / 127``, ``wq = round(w / w_scale)``."""
        w = linear.weight.detach()
        mod = cls(linear.in_features, linear.out_features, linear.bias is not None, mode, device="meta")
        wq, w_scale = ops.quantize_rows(w.float())
        mod.wq, mod.w_scale = wq, w_scale
        if linear.bias is not None:
            mod.bias = linear.bias.detach().float().clone()
        mod.format_version = torch.tensor(FORMAT_VERSION, dtype=torch.int32, device=w.device)
        return mod

    def _apply(self, fn, recurse=True):
        # .half() / .to(bfloat16) must not round the scales and bias: they stay
        # float32 (the int8 format), only their device follows the module
        keep = {name: getattr(self, name) for name in ("w_scale", "bias") if getattr(self, name) is not None}
        self.drop_packed_weight()
        super()._apply(fn, recurse)
        for name, original in keep.items():
            setattr(self, name, original.to(device=getattr(self, name).device, dtype=torch.float32))
        return self

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight ``wq * w_scale[:, None]`` this layer computes with."""
        return self.wq.float() * self.w_scale[:, None]

    def to_float(self) -> nn.Linear:
        """An ``nn.Linear`` holding the dequantized weight."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.wq.device)
        with torch.no_grad():
            lin.weight.copy_(self.dequantized_weight())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def drop_packed_weight(self) -> None:
        """Forget the cached prepacked weights (the next CPU forward repacks ``wq``)."""
        self._packed = {}

    def packed_weight(self) -> torch.Tensor:
        """``int8_pack_weight(wq)``, cached per device while ``wq`` is the same tensor at the same version."""
        wq = self.wq
        if "_packed" not in self.__dict__:  # a module unpickled from before the cache existed
            self._packed = {}
        cached = self._packed.get(wq.device)
        if cached is not None and cached[0] is wq and cached[1] == wq._version:
            return cached[2]
        packed = ops.int8_pack_weight(wq)
        # holding wq itself (not its address) keeps a freed weight's address from matching a new one
        self._packed[wq.device] = (wq, wq._version, packed)
        return packed

    def _uses_packed(self, x: torch.Tensor) -> bool:
        # the CPU kernels, eagerly: a compiled graph takes int8_linear (the cache is Python state)
        return (x.device.type == "cpu" and backends.get_backend() in ("auto", "cpu") and backends.native_built("cpu")
                and not torch.compiler.is_compiling())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "dynamic":
            q, q_scale = ops.quantize_rows(x)
            if self._uses_packed(x):
                return ops.int8_linear_packed(q, q_scale, self.packed_weight(), self.w_scale, self.bias, out_dtype=x.dtype)
            return ops.int8_linear(q, q_scale, self.wq, self.w_scale, self.bias, out_dtype=x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return ops.int8_weight_linear(x, self.wq, self.w_scale, bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_loaded_version(type(self).__name__, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        op = "int8_linear" if self.mode == "dynamic" else "int8_weight_linear"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"mode={self.mode}, weight=int8 per-channel, backend={backends.describe(op, self.wq.device)}"
        )
