"""Triton kernel of ``dwsep_conv2d``: depthwise conv -> activation -> 1x1 conv -> activation.

One program owns ``BLOCK_P`` output pixels x ``BLOCK_CO`` output channels. For
each chunk of ``BLOCK_C`` input channels it computes the depthwise output of its
pixels in registers (``KH*KW`` shifted loads, channels innermost: contiguous in
NHWC) and multiplies it straight into the pointwise accumulator with
``tl.dot``: the depthwise output never reaches memory. Programs that share
pixels but not output channels recompute the depthwise part, ``KH*KW`` MACs per
(pixel, channel) against ``BLOCK_CO`` for the pointwise part. Any input strides
work; NHWC (channels_last) is the fast layout, and the output keeps it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from effdl import _checks, ops
from effdl.triton._dot import FP64_TILE, accumulator, dot
from effdl.triton._runtime import check_device, configs, tile_grid, triton_op, wrap_triton

_ACTIVATION_CODES = {"none": 0, "relu": 1, "relu6": 2}


@triton.jit
def _activate(v, ACT: tl.constexpr):
    if ACT == 1:
        v = tl.maximum(v, 0.0)
    elif ACT == 2:
        v = tl.minimum(tl.maximum(v, 0.0), 6.0)
    return v


def _dwsep_configs():
    gpu = [
        triton.Config({"BLOCK_P": bp, "BLOCK_C": bc, "BLOCK_CO": bo}, num_warps=w, num_stages=s)
        for bp, bc, bo, w, s in (
            (64, 32, 32, 4, 2),
            (64, 32, 64, 4, 2),
            (128, 32, 64, 4, 2),
            (64, 64, 128, 8, 2),
            (128, 16, 128, 8, 2),
            (32, 32, 64, 4, 2),
        )
    ]
    return configs(gpu, {"BLOCK_P": 32, "BLOCK_C": 16, "BLOCK_CO": 16})


@triton.jit
def _dwsep_kernel(x_ptr, dw_w_ptr, dw_b_ptr, pw_w_ptr, pw_b_ptr, y_ptr,
                  C, H, W, Cout, Ho, Wo, P,
                  stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                  sxb, sxc, sxh, sxw, sdc, sdh, sdw, spo, spc, syb, syc, syh, syw,
                  KH: tl.constexpr, KW: tl.constexpr, HAS_DW_BIAS: tl.constexpr, HAS_PW_BIAS: tl.constexpr,
                  DW_ACT: tl.constexpr, PW_ACT: tl.constexpr, FP64: tl.constexpr,
                  BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CO: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # output pixel, flat over (B, Ho, Wo)
    co = tl.program_id(1) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    p_ok = p < P
    co_ok = co < Cout
    b = p // (Ho * Wo)
    ho = (p // Wo) % Ho
    wo = p % Wo
    x_img = x_ptr + b.to(tl.int64) * sxb
    h0 = ho * stride_h - pad_h
    w0 = wo * stride_w - pad_w
    acc = accumulator(BLOCK_P, BLOCK_CO, FP64)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_ok = c < C
        d = accumulator(BLOCK_P, BLOCK_C, FP64)
        for i in tl.static_range(KH):
            hi = h0 + i * dil_h
            h_ok = p_ok & (hi >= 0) & (hi < H)
            for j in tl.static_range(KW):
                wi = w0 + j * dil_w
                ok = h_ok & (wi >= 0) & (wi < W)
                pix = x_img + hi.to(tl.int64) * sxh + wi.to(tl.int64) * sxw
                xv = tl.load(pix[:, None] + c[None, :] * sxc, mask=ok[:, None] & c_ok[None, :], other=0.0)
                wv = tl.load(dw_w_ptr + c * sdc + i * sdh + j * sdw, mask=c_ok, other=0.0)
                d += xv.to(d.dtype) * wv.to(d.dtype)[None, :]
        if HAS_DW_BIAS:
            d += tl.load(dw_b_ptr + c, mask=c_ok, other=0.0).to(d.dtype)[None, :]
        d = _activate(d, DW_ACT)
        # channels past C: d is act(0) = 0 there and their pw rows load as 0
        pw = tl.load(pw_w_ptr + co[None, :] * spo + c[:, None] * spc, mask=c_ok[:, None] & co_ok[None, :], other=0.0)
        acc = dot(d.to(pw.dtype), pw, acc)
    if HAS_PW_BIAS:
        acc += tl.load(pw_b_ptr + co, mask=co_ok, other=0.0).to(acc.dtype)[None, :]
    acc = _activate(acc, PW_ACT)
    y_pix = y_ptr + b.to(tl.int64) * syb + ho.to(tl.int64) * syh + wo.to(tl.int64) * syw
    tl.store(y_pix[:, None] + co[None, :] * syc, acc, mask=p_ok[:, None] & co_ok[None, :])


_dwsep_kernel_tuned = triton.autotune(configs=_dwsep_configs(), key=["C", "Cout", "P", "KH", "KW"])(_dwsep_kernel)
_FP64_BLOCKS = {"BLOCK_P": FP64_TILE, "BLOCK_C": FP64_TILE, "BLOCK_CO": FP64_TILE}


@triton_op("dwsep_conv2d")
def _dwsep_conv2d(x: torch.Tensor, dw_weight: torch.Tensor, dw_bias: torch.Tensor | None, pw_weight: torch.Tensor,
                  pw_bias: torch.Tensor | None, stride: list[int], padding: list[int], dilation: list[int],
                  dw_activation: str, pw_activation: str) -> torch.Tensor:
    B, Cout, Ho, Wo = _checks.dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                                           dw_activation, pw_activation)
    check_device(x, "dwsep_conv2d")
    fmt = torch.channels_last if _checks.keeps_channels_last(x) else torch.contiguous_format
    y = torch.empty(B, Cout, Ho, Wo, dtype=x.dtype, device=x.device, memory_format=fmt)
    _, C, H, W = x.shape
    P = B * Ho * Wo
    if P * Cout > 0:
        fp64 = x.dtype == torch.float64
        kernel, blocks = (_dwsep_kernel, _FP64_BLOCKS) if fp64 else (_dwsep_kernel_tuned, {})
        wrap_triton(kernel)[tile_grid(P, Cout, "BLOCK_P", "BLOCK_CO")](
            x, dw_weight, dw_bias if dw_bias is not None else dw_weight, pw_weight,
            pw_bias if pw_bias is not None else pw_weight, y,
            C, H, W, Cout, Ho, Wo, P, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
            *x.stride(), dw_weight.stride(0), dw_weight.stride(2), dw_weight.stride(3),
            pw_weight.stride(0), pw_weight.stride(1), *y.stride(),
            KH=dw_weight.shape[2], KW=dw_weight.shape[3], HAS_DW_BIAS=dw_bias is not None,
            HAS_PW_BIAS=pw_bias is not None, DW_ACT=_ACTIVATION_CODES[dw_activation],
            PW_ACT=_ACTIVATION_CODES[pw_activation], FP64=fp64, **blocks,
        )
    return y


# the effdl op's backward recomputes the intermediates in the accumulator type
_dwsep_conv2d.register_autograd(ops._dwsep_backward, setup_context=ops._dwsep_setup)


def dwsep_conv2d(x: torch.Tensor, dw_weight: torch.Tensor, dw_bias: torch.Tensor | None, pw_weight: torch.Tensor,
                 pw_bias: torch.Tensor | None, stride: tuple[int, int] | list[int] = (1, 1),
                 padding: tuple[int, int] | list[int] = (1, 1), dilation: tuple[int, int] | list[int] = (1, 1),
                 dw_activation: str = "relu6", pw_activation: str = "none") -> torch.Tensor:
    """Triton :func:`effdl.ops.dwsep_conv2d`: ``x [B, C, H, W]`` -> ``[B, Cout, Ho, Wo]``,
    channels_last when ``x`` is. Differentiable."""
    return torch.ops.effdl_triton.dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, list(stride),
                                              list(padding), list(dilation), dw_activation, pw_activation)
