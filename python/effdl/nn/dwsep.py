"""``DWSeparableConv2d``: depthwise conv -> activation -> 1x1 conv -> activation, fused."""

from __future__ import annotations

import math

import torch
from torch import nn

from effdl import backends, ops, reference
from effdl.nn._format import FORMAT_VERSION, check_loaded_version, register_format_version


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv into the conv's weight and bias."""
    why = bn_unfoldable(bn)
    if why:
        raise ValueError(f"DWSeparableConv2d.from_float: {why}")
    ct = torch.promote_types(weight.dtype, torch.float32)  # fold in fp32, or fp64 for fp64 models
    inv_std = torch.rsqrt(bn.running_var.to(ct) + bn.eps)
    gamma = bn.weight.detach().to(ct) if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias.detach().to(ct) if bn.bias is not None else torch.zeros_like(inv_std)
    scale = gamma * inv_std
    b = bias.detach().to(ct) if bias is not None else torch.zeros_like(scale)
    new_w = weight.detach().to(ct) * scale.view(-1, *([1] * (weight.dim() - 1)))
    new_b = (b - bn.running_mean.to(ct)) * scale + beta
    return new_w.to(weight.dtype), new_b.to(weight.dtype)


class DWSeparableConv2d(nn.Module):
    """MobileNet-style depthwise-separable block computed in one fused pass.

    ``y = act_pw(pw(act_dw(dw(x))))`` where ``dw`` is a ``kh x kw`` depthwise conv
    (``dw_weight [C, 1, kh, kw]``, ``dw_bias [C]``) and ``pw`` a 1x1 conv
    (``pw_weight [Cout, C, 1, 1]``, ``pw_bias [Cout]``); the depthwise output
    never goes to memory. Activations: ``"none"``, ``"relu"``, ``"relu6"``.

    Input ``[B, C, H, W]``; channels_last is the fast layout and the output keeps
    the input's memory format. Trainable (the fused op has autograd).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        dw_activation: str = "relu6",
        pw_activation: str = "none",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, name in (("dw_activation", dw_activation), ("pw_activation", pw_activation)):
            if name not in reference.ACTIVATIONS:
                raise ValueError(f"DWSeparableConv2d: {arg} must be one of {reference.ACTIVATIONS}, got {name!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.dw_activation, self.pw_activation = dw_activation, pw_activation
        kw = {"device": device, "dtype": dtype}
        self.dw_weight = nn.Parameter(torch.empty(in_channels, 1, *self.kernel_size, **kw))
        self.pw_weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1, **kw))
        if bias:
            self.dw_bias = nn.Parameter(torch.empty(in_channels, **kw))
            self.pw_bias = nn.Parameter(torch.empty(out_channels, **kw))
        else:
            self.register_parameter("dw_bias", None)
            self.register_parameter("pw_bias", None)
        self.reset_parameters()
        register_format_version(self)
        if device is not None:
            self.format_version = self.format_version.to(device)

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation for both convolutions."""
        for w, b in ((self.dw_weight, self.dw_bias), (self.pw_weight, self.pw_bias)):
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            if b is not None:
                fan_in = w.shape[1] * w.shape[2] * w.shape[3]
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(b, -bound, bound)

    @classmethod
    def from_float(
        cls,
        dw_conv: nn.Conv2d,
        pw_conv: nn.Conv2d,
        dw_bn: nn.BatchNorm2d | None = None,
        pw_bn: nn.BatchNorm2d | None = None,
        dw_activation: str = "relu6",
        pw_activation: str = "none",
    ) -> DWSeparableConv2d:
        """Fuse ``dw_conv [-> dw_bn] -> dw_activation -> pw_conv [-> pw_bn] -> pw_activation``.

        BatchNorms are folded with their running statistics (the eval-mode
        function). Raises ``ValueError`` when the convolutions do not form a
        depthwise-separable pair (channel multiplier, groups, non-zero padding
        mode, string padding, a 1x1 conv with stride/padding, ...).
        """
        why = dwsep_incompatibility(dw_conv, pw_conv)
        if why:
            raise ValueError(f"DWSeparableConv2d.from_float: {why}")
        dw_w, dw_b = dw_conv.weight.detach(), None if dw_conv.bias is None else dw_conv.bias.detach()
        pw_w, pw_b = pw_conv.weight.detach(), None if pw_conv.bias is None else pw_conv.bias.detach()
        if dw_bn is not None:
            dw_w, dw_b = _fold_bn(dw_w, dw_b, dw_bn)
        if pw_bn is not None:
            pw_w, pw_b = _fold_bn(pw_w, pw_b, pw_bn)
        C, Cout = dw_conv.in_channels, pw_conv.out_channels
        has_bias = dw_b is not None or pw_b is not None
        mod = cls(C, Cout, dw_conv.kernel_size, dw_conv.stride, dw_conv.padding, dw_conv.dilation,
                  dw_activation, pw_activation, bias=has_bias, device="meta", dtype=dw_w.dtype)
        mod.dw_weight = nn.Parameter(dw_w.clone())
        mod.pw_weight = nn.Parameter(pw_w.clone())
        if has_bias:
            mod.dw_bias = nn.Parameter(dw_b.clone() if dw_b is not None else torch.zeros(C, dtype=dw_w.dtype, device=dw_w.device))
            mod.pw_bias = nn.Parameter(pw_b.clone() if pw_b is not None else torch.zeros(Cout, dtype=pw_w.dtype, device=pw_w.device))
        mod.format_version = torch.tensor(FORMAT_VERSION, dtype=torch.int32, device=dw_w.device)
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.dwsep_conv2d(
            x, self.dw_weight, self.dw_bias, self.pw_weight, self.pw_bias, self.stride, self.padding,
            self.dilation, self.dw_activation, self.pw_activation,
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_loaded_version(type(self).__name__, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, dw_activation={self.dw_activation}, "
            f"pw_activation={self.pw_activation}, bias={self.dw_bias is not None}, backend={backends.describe('dwsep_conv2d', self.pw_weight.device)}"
        )


def bn_unfoldable(bn: nn.BatchNorm2d) -> str | None:
    """Why a BatchNorm cannot be folded into the conv before it (None if it can)."""
    if bn.running_mean is None or bn.running_var is None:
        return "a BatchNorm without running statistics cannot be folded"
    if bn.training:
        return "a BatchNorm in training mode cannot be folded (call .eval() first)"
    return None


def dwsep_incompatibility(dw_conv: nn.Module, pw_conv: nn.Module) -> str | None:
    """Why ``dw_conv -> pw_conv`` cannot become a :class:`DWSeparableConv2d` (None if it can)."""
    if type(dw_conv) is not nn.Conv2d or type(pw_conv) is not nn.Conv2d:
        return "both layers must be nn.Conv2d"
    C = dw_conv.in_channels
    if not (dw_conv.groups == C and dw_conv.out_channels == C):
        return f"the first conv is not depthwise (groups={dw_conv.groups}, in={C}, out={dw_conv.out_channels})"
    if isinstance(dw_conv.padding, str):
        return f"string padding {dw_conv.padding!r} is not supported"
    if dw_conv.padding_mode != "zeros":
        return f"padding_mode {dw_conv.padding_mode!r} is not supported"
    if pw_conv.in_channels != C or pw_conv.groups != 1:
        return f"the second conv must be a dense 1x1 conv over {C} channels"
    if tuple(pw_conv.kernel_size) != (1, 1) or tuple(pw_conv.stride) != (1, 1) or tuple(pw_conv.padding) != (0, 0):
        return "the second conv must be 1x1 with stride 1 and no padding"
    if dw_conv.weight.dtype != pw_conv.weight.dtype:
        return "the two convs have different dtypes"
    return None
