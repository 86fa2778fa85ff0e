"""Typed wrappers of ``torch.ops.effdl.*``, their fake (meta) kernels and autograd.

Each wrapper has the operator's name and signature with keyword defaults and
routes to the backend chosen by :mod:`effdl.backends` (the native kernel, the
Triton kernel or the pure-PyTorch reference). The fakes repeat the native input checks with
``torch._check`` so that ``torch.compile`` / ``torch.export`` see the same
errors and output shapes.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F

from effdl import _checks, _ext, backends, formats, reference


def _native(op: str):
    return getattr(torch.ops.effdl, op)


def _triton(op: str):
    # imported on first use: effdl imports without triton, and TRITON_INTERPRET is read when
    # the kernels are defined
    return getattr(importlib.import_module("effdl.triton"), op)


def _route(op: str, device: torch.device):
    backend = backends.select(op, device)
    if backend == "native":
        return _native(op)
    if backend == "triton":
        return _triton(op)
    return getattr(reference, op)


# ---------------------------------------------------------------- wrappers


def nm_compress(w: torch.Tensor, n: int = 2, m: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack an N:M-sparse weight.

    Args:
        w: ``[rows, K]`` float32/float64/bfloat16/float16, ``K % m == 0``, at most
            ``n`` nonzeros per group of ``m`` (else ``RuntimeError`` naming the row
            and group; :func:`effdl.formats.nm_mask` makes a dense weight N:M).
    Returns:
        ``values [rows, K*n/m]`` (``w``'s dtype) and ``meta [rows, ceil(K/8)]`` uint8,
        the format of :mod:`effdl.formats`.
    """
    return _route("nm_compress", w.device)(w, n, m)


def nm_decompress(values: torch.Tensor, meta: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Exact inverse of :func:`nm_compress`: the dense ``[rows, K]`` weight."""
    return _route("nm_decompress", values.device)(values, meta, n, m)


def nm_linear(
    x: torch.Tensor,
    values: torch.Tensor,
    meta: torch.Tensor,
    n: int = 2,
    m: int = 4,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x[*, K] @ W.T + bias`` with ``W [N, K]`` in compressed N:M form.

    ``x``, ``values`` and ``bias [N]`` share one dtype (float32, float64, bfloat16
    or float16); accumulation is float32 (float64 for float64). Differentiable in
    ``x``, ``values`` and ``bias``: gradients flow only to kept weights, so
    fine-tuning keeps the pattern. Returns ``[*, N]`` in ``x``'s dtype.
    """
    return _route("nm_linear", x.device)(x, values, meta, n, m, bias)


def nm_pack_weight(values: torch.Tensor, meta: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Prepack a 2:4 weight (``values [N, K/2]`` + ``meta``) for :func:`nm_linear_packed` (CPU only).

    Returns ``values.dtype`` ``[ceil(N/16), 32 * K/4 + (64 / itemsize) * ceil(K/32)]``: panels of
    16 output columns holding each group's 16 kept pairs side by side, then the columns'
    keep-nibbles lane by lane — what the vector kernel reads without decoding. ``meta`` is
    validated; other N:M patterns are refused. A derived, backend-specific layout: cache it
    (``SparseLinear`` does, per device), never save it.
    """
    return _route("nm_pack_weight", values.device)(values, meta, n, m)


def nm_linear_packed(x: torch.Tensor, packed: torch.Tensor, N: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`nm_linear` with the 2:4 weight given as ``packed = nm_pack_weight(values, meta)`` (CPU only).

    ``x [*, K]`` and ``bias [N]`` in ``packed``'s dtype; ``K`` is ``x``'s last dim. The result is
    :func:`nm_linear`'s (fp32 sums; on the ``avx512_bf16`` level bf16 runs the same kernel on both
    layouts, bit for bit). A packed tensor whose nibbles are not 2:4 masks raises. Inference only:
    gradients need :func:`nm_linear` on the canonical tensors. Pays from
    ``effdl._ext.nm_packed_min_rows(dtype)`` rows of ``x`` on (-1: never at this CPU level).
    """
    return _route("nm_linear_packed", x.device)(x, packed, N, bias)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric int8 quantization of each row of ``x[*, K]``.

    ``scale = max(absmax / 127, FLT_MIN)`` (float32 ``[*]``) and
    ``q = clamp(round(x / scale), -127, 127)`` (int8 ``[*, K]``, ties to even).
    NaN or Inf in ``x`` raises. Inference only (no autograd).
    """
    return _route("quantize_rows", x.device)(x)


def int8_linear(
    q: torch.Tensor,
    q_scale: torch.Tensor,
    wq: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """W8A8 linear: ``float(q[*, K] @ wq[N, K].T) * q_scale[*, None] * w_scale[N] + bias[N]``.

    The int8 products accumulate exactly in int32 (``K <= 131071`` guarantees no
    overflow; larger K is rejected). Scales are float32; output is ``out_dtype``
    (float32 default, bfloat16 or float16). Inference only.
    """
    return _route("int8_linear", q.device)(q, q_scale, wq, w_scale, bias, out_dtype)


def int8_pack_weight(wq: torch.Tensor) -> torch.Tensor:
    """Prepack an int8 weight ``wq[N, K]`` for :func:`int8_linear_packed` (CPU only).

    Returns int8 ``[ceil(N/16), 64 * ceil(K/4) + 64]``: panels of 16 output columns
    interleaved 4 k-bytes at a time (one 64-byte group per vector register) plus the
    columns' sums, one layout for every CPU instruction set. A derived, backend-specific
    layout: cache it (``QLinear`` does, per device), never save it.
    """
    return _route("int8_pack_weight", wq.device)(wq)


def int8_linear_packed(
    q: torch.Tensor,
    q_scale: torch.Tensor,
    packed: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """:func:`int8_linear` with the weight given as ``packed = int8_pack_weight(wq)`` (CPU only).

    ``N`` is ``w_scale``'s length and ``K`` is ``q``'s last dim; the results are those of
    :func:`int8_linear` on ``wq``, bit for bit (exact int32 products, the same fp32
    epilogue). On CUDA tensors the ``"auto"`` backend computes it with the reference.
    Inference only.
    """
    return _route("int8_linear_packed", q.device)(q, q_scale, packed, w_scale, bias, out_dtype)


def nm_int8_linear(
    q: torch.Tensor,
    q_scale: torch.Tensor,
    values_q: torch.Tensor,
    meta: torch.Tensor,
    n: int,
    m: int,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """N:M-sparse W8A8 linear: :func:`int8_linear` with ``wq [N, K]`` in compressed N:M form.

    ``values_q`` int8 ``[N, K*n/m]`` and ``meta`` uint8 ``[N, ceil(K/8)]`` are the
    :mod:`effdl.formats` storage of ``wq`` (``nm_compress`` of an N:M-sparse weight,
    quantized). Only the kept weights are multiplied; their products accumulate
    exactly in int32 (``K*n/m <= 131071`` guarantees no overflow; more is
    rejected), then ``* q_scale[*, None] * w_scale[N] + bias[N]`` in fp32, cast to
    ``out_dtype`` (float32 default, bfloat16 or float16). ``n`` and ``m`` are
    needed because ``meta`` alone cannot tell 2:4 from 4:8. CPU kernel only: on
    CUDA tensors the ``"auto"`` backend computes it with the reference. Inference only.
    """
    return _route("nm_int8_linear", q.device)(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype)


def int8_weight_linear(
    x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Weight-only int8 linear ``x[*, K] @ (wq[N, K] * w_scale[:, None]).T + bias``.

    ``x`` float32/bfloat16/float16, ``wq`` int8, ``w_scale`` float32 ``[N]``,
    ``bias`` in ``x``'s dtype; the weight is dequantized on the fly, never
    materialised. Returns ``[*, N]`` in ``x``'s dtype. Inference only.

    Sums are fp32. On a CPU with AVX512-BF16, bfloat16 ``x`` is read as it is (the
    int8 weights widen exactly to bf16 and ``vdpbf16ps`` forms each product exactly;
    it treats subnormal inputs as zero); elsewhere 16-bit ``x`` is widened to fp32 first.
    """
    return _route("int8_weight_linear", x.device)(x, wq, w_scale, bias)


def dwsep_conv2d(
    x: torch.Tensor,
    dw_weight: torch.Tensor,
    dw_bias: torch.Tensor | None,
    pw_weight: torch.Tensor,
    pw_bias: torch.Tensor | None,
    stride: tuple[int, int] | list[int] = (1, 1),
    padding: tuple[int, int] | list[int] = (1, 1),
    dilation: tuple[int, int] | list[int] = (1, 1),
    dw_activation: str = "relu6",
    pw_activation: str = "none",
) -> torch.Tensor:
    """Fused depthwise conv -> activation -> pointwise 1x1 conv -> activation.

    ``x [B, C, H, W]``, ``dw_weight [C, 1, kh, kw]``, ``pw_weight [Cout, C, 1, 1]``,
    optional biases ``[C]`` / ``[Cout]``, all in one float dtype. Activations:
    ``"none"``, ``"relu"``, ``"relu6"``. The depthwise output is never written to
    memory. Returns ``[B, Cout, Ho, Wo]``, channels_last when ``x`` is
    channels_last (the fast layout), else contiguous. Differentiable.
    """
    return _route("dwsep_conv2d", x.device)(
        x, dw_weight, dw_bias, pw_weight, pw_bias, list(stride), list(padding), list(dilation),
        dw_activation, pw_activation,
    )


# ---------------------------------------------------------------- fakes: the native checks, mirrored


def _linear_out_shape(x: torch.Tensor, N: int) -> list[int]:
    return [*x.shape[:-1], N]


if _ext.available():

    @torch.library.register_fake("effdl::nm_compress")
    def _nm_compress_fake(w, n, m):
        _checks.nm_compress(w, n, m)
        rows, K = w.shape
        return w.new_empty(rows, K // m * n), w.new_empty(rows, _checks.meta_bytes(K), dtype=torch.uint8)

    @torch.library.register_fake("effdl::nm_decompress")
    def _nm_decompress_fake(values, meta, n, m):
        K = _checks.nm_storage(values, meta, n, m, "nm_decompress")
        return values.new_empty(values.shape[0], K)

    @torch.library.register_fake("effdl::nm_linear")
    def _nm_linear_fake(x, values, meta, n, m, bias=None):
        _checks.nm_linear(x, values, meta, n, m, bias)
        return x.new_empty(_linear_out_shape(x, values.shape[0]))

    @torch.library.register_fake("effdl::nm_pack_weight")
    def _nm_pack_weight_fake(values, meta, n, m):
        K = _checks.nm_pack_weight(values, meta, n, m)
        return values.new_empty(_checks.nm_packed_shape(values.shape[0], K, values.dtype))

    @torch.library.register_fake("effdl::nm_linear_packed")
    def _nm_linear_packed_fake(x, packed, N, bias=None):
        _checks.nm_linear_packed(x, packed, N, bias)
        return x.new_empty(_linear_out_shape(x, N))

    @torch.library.register_fake("effdl::quantize_rows")
    def _quantize_rows_fake(x):
        _checks.quantize_rows(x)
        return x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)

    @torch.library.register_fake("effdl::int8_linear")
    def _int8_linear_fake(q, q_scale, wq, w_scale, bias=None, out_dtype=None):
        out = _checks.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
        return q.new_empty(_linear_out_shape(q, wq.shape[0]), dtype=out)

    @torch.library.register_fake("effdl::int8_pack_weight")
    def _int8_pack_weight_fake(wq):
        _checks.int8_pack_weight(wq)
        return wq.new_empty(_checks.int8_packed_shape(*wq.shape))

    @torch.library.register_fake("effdl::int8_linear_packed")
    def _int8_linear_packed_fake(q, q_scale, packed, w_scale, bias=None, out_dtype=None):
        out = _checks.int8_linear_packed(q, q_scale, packed, w_scale, bias, out_dtype)
        return q.new_empty(_linear_out_shape(q, w_scale.shape[0]), dtype=out)

    @torch.library.register_fake("effdl::nm_int8_linear")
    def _nm_int8_linear_fake(q, q_scale, values_q, meta, n, m, w_scale, bias=None, out_dtype=None):
        out = _checks.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype)
        return q.new_empty(_linear_out_shape(q, values_q.shape[0]), dtype=out)

    @torch.library.register_fake("effdl::int8_weight_linear")
    def _int8_weight_linear_fake(x, wq, w_scale, bias=None):
        _checks.int8_weight_linear(x, wq, w_scale, bias)
        return x.new_empty(_linear_out_shape(x, wq.shape[0]))

    @torch.library.register_fake("effdl::dwsep_conv2d")
    def _dwsep_conv2d_fake(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                           dw_activation, pw_activation):
        shape = _checks.dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                                     dw_activation, pw_activation)
        fmt = torch.channels_last if _checks.keeps_channels_last(x) else torch.contiguous_format
        return x.new_empty(shape).contiguous(memory_format=fmt)


# ---------------------------------------------------------------- autograd


def _nm_linear_setup(ctx, inputs, output):
    x, values, meta, n, m, bias = inputs
    ctx.save_for_backward(x, values, meta)
    ctx.nm = (n, m)
    ctx.has_bias = bias is not None


def _nm_linear_backward(ctx, grad_y):
    x, values, meta = ctx.saved_tensors
    n, m = ctx.nm
    N, K = values.shape[0], x.shape[-1]
    gx = gv = gb = None
    g2 = grad_y.reshape(-1, N)
    if ctx.needs_input_grad[0]:
        w = nm_decompress(values, meta, n, m)
        gx = (g2 @ w).reshape(x.shape)
    if ctx.needs_input_grad[1]:
        # dense dW = g.T @ x, read back only at the kept positions: the pattern holds
        cols = formats.kept_columns(meta, K, n, m)
        ct = reference.compute_dtype(x.dtype)
        gw = g2.t().to(ct) @ x.reshape(-1, K).to(ct)
        gv = gw.gather(1, cols).to(values.dtype)
    if ctx.has_bias and ctx.needs_input_grad[5]:
        gb = g2.sum(0)
    return gx, gv, None, None, None, gb


def _act_grad(grad: torch.Tensor, pre: torch.Tensor, name: str) -> torch.Tensor:
    """Gradient through relu / relu6 / none at pre-activation ``pre`` (PyTorch's
    convention: zero at the kinks)."""
    if name == "relu":
        return grad * (pre > 0)
    if name == "relu6":
        return grad * ((pre > 0) & (pre < 6))
    return grad


def _dwsep_setup(ctx, inputs, output):
    x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, dw_act, pw_act = inputs
    ctx.save_for_backward(x, dw_weight, dw_bias, pw_weight, pw_bias)
    ctx.conf = (list(stride), list(padding), list(dilation), dw_act, pw_act)


def _dwsep_backward(ctx, grad_y):
    x, dw_weight, dw_bias, pw_weight, pw_bias = ctx.saved_tensors
    stride, padding, dilation, dw_act, pw_act = ctx.conf
    C = x.shape[1]
    ct = reference.compute_dtype(x.dtype)

    def up(t):
        return None if t is None else t.to(ct)

    xc, dwc, pwc = x.to(ct), dw_weight.to(ct), pw_weight.to(ct)
    # Recompute the fused forward's intermediates in the accumulator type: the
    # activation masks must come from the unrounded pre-activations, exactly as
    # the kernel applied them, not from a 16-bit rounded output.
    u = F.conv2d(xc, dwc, up(dw_bias), stride, padding, dilation, groups=C)
    a = reference.activation(u, dw_act)
    z = F.conv2d(a, pwc, up(pw_bias))
    gz = _act_grad(grad_y.to(ct), z, pw_act)
    g_pw = torch.einsum("bohw,bchw->oc", gz, a).reshape(pw_weight.shape)
    g_a = torch.einsum("bohw,oc->bchw", gz, pwc.flatten(1))
    g_u = _act_grad(g_a, u, dw_act)
    g_x = torch.nn.grad.conv2d_input(list(x.shape), dwc, g_u, stride, padding, dilation, groups=C)
    g_dw = torch.nn.grad.conv2d_weight(xc, list(dw_weight.shape), g_u, stride, padding, dilation, groups=C)
    g_dwb = g_u.sum((0, 2, 3)) if dw_bias is not None else None
    g_pwb = gz.sum((0, 2, 3)) if pw_bias is not None else None

    def back(t, like):
        return None if t is None else t.to(like.dtype)

    return (back(g_x, x), back(g_dw, dw_weight), back(g_dwb, x), back(g_pw, pw_weight), back(g_pwb, x),
            None, None, None, None, None)


if _ext.available():
    torch.library.register_autograd("effdl::nm_linear", _nm_linear_backward, setup_context=_nm_linear_setup)
    torch.library.register_autograd("effdl::dwsep_conv2d", _dwsep_backward, setup_context=_dwsep_setup)
