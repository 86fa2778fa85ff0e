"""Typed wrappers of ``torch.ops.effdl.*``, their fake (meta) kernels and autograd.

Each wrapper has the operator's name and signature with keyword defaults and
routes to the backend chosen by :mod:`effdl.backends` (the native kernel or the
pure-PyTorch reference). The fakes repeat the native input checks with
``torch._check`` so that ``torch.compile`` / ``torch.export`` see the same
errors and output shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from effdl import _ext, backends, formats, reference

_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_ACT_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.bfloat16: "BFloat16", torch.float16: "Half"}


def _native(op: str):
    return getattr(torch.ops.effdl, op)


def _route(op: str, device: torch.device):
    if backends.select(op, device) == "native":
        return _native(op)
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


def int8_weight_linear(
    x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Weight-only int8 linear ``x[*, K] @ (wq[N, K] * w_scale[:, None]).T + bias``.

    ``x`` float32/bfloat16/float16, ``wq`` int8, ``w_scale`` float32 ``[N]``,
    ``bias`` in ``x``'s dtype; the weight is dequantized on the fly, never
    materialised. Returns ``[*, N]`` in ``x``'s dtype. Inference only.
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


def _check_pattern(n: int, m: int, op: str) -> None:
    torch._check(2 <= m <= 16 and 1 <= n < m,
                 lambda: f"effdl.{op}: the N:M pattern needs 1 <= n < m <= 16, got n={n}, m={m}")


def _check_nm_storage(values, meta, n, m, op) -> int:
    _check_pattern(n, m, op)
    torch._check(values.dim() == 2, lambda: f"effdl.{op}: values must be 2-D [rows, K*n/m], got shape {list(values.shape)}")
    torch._check(values.dtype in _FLOATS, lambda: f"effdl.{op}: values must be float32, float64, bfloat16 or float16, got {values.dtype}")
    torch._check(meta.dim() == 2 and meta.dtype == torch.uint8,
                 lambda: f"effdl.{op}: meta must be a 2-D uint8 tensor, got {meta.dtype} of shape {list(meta.shape)}")
    torch._check(values.shape[1] % n == 0, lambda: f"effdl.{op}: values' last dim {values.shape[1]} must be a multiple of n={n}")
    K = values.shape[1] // n * m
    torch._check(meta.shape[0] == values.shape[0] and meta.shape[1] == formats.meta_bytes(K),
                 lambda: f"effdl.{op}: meta must have shape [{values.shape[0]}, {formats.meta_bytes(K)}]")
    return K


def _check_vector(t, name, size, op) -> None:
    if t is not None:
        torch._check(t.dim() == 1 and t.shape[0] == size, lambda: f"effdl.{op}: {name} must have shape [{size}], got {list(t.shape)}")


def _linear_out_shape(x: torch.Tensor, N: int) -> list[int]:
    return [*x.shape[:-1], N]


if _ext.available():

    @torch.library.register_fake("effdl::nm_compress")
    def _nm_compress_fake(w, n, m):
        _check_pattern(n, m, "nm_compress")
        torch._check(w.dim() == 2, lambda: f"effdl.nm_compress: w must be 2-D [rows, K], got shape {list(w.shape)}")
        torch._check(w.dtype in _FLOATS, lambda: f"effdl.nm_compress: w must be float32, float64, bfloat16 or float16, got {w.dtype}")
        torch._check(w.shape[1] % m == 0, lambda: f"effdl.nm_compress: w's last dim K={w.shape[1]} must be a multiple of m={m}")
        rows, K = w.shape
        return w.new_empty(rows, K // m * n), w.new_empty(rows, formats.meta_bytes(K), dtype=torch.uint8)

    @torch.library.register_fake("effdl::nm_decompress")
    def _nm_decompress_fake(values, meta, n, m):
        K = _check_nm_storage(values, meta, n, m, "nm_decompress")
        return values.new_empty(values.shape[0], K)

    @torch.library.register_fake("effdl::nm_linear")
    def _nm_linear_fake(x, values, meta, n, m, bias=None):
        K = _check_nm_storage(values, meta, n, m, "nm_linear")
        torch._check(x.dim() >= 1 and x.shape[-1] == K, lambda: f"effdl.nm_linear: x must have shape [*, {K}] to match the weight (K={K}), got {list(x.shape)}")
        torch._check(x.dtype == values.dtype, lambda: f"effdl.nm_linear: x dtype {x.dtype} must match values dtype {values.dtype}")
        _check_vector(bias, "bias", values.shape[0], "nm_linear")
        if bias is not None:
            torch._check(bias.dtype == values.dtype, lambda: f"effdl.nm_linear: bias dtype {bias.dtype} must match values dtype {values.dtype}")
        return x.new_empty(_linear_out_shape(x, values.shape[0]))

    @torch.library.register_fake("effdl::quantize_rows")
    def _quantize_rows_fake(x):
        torch._check(x.dim() >= 1, lambda: "effdl.quantize_rows: x must have at least 1 dim [*, K], got a scalar")
        torch._check(x.dtype in _ACT_FLOATS, lambda: f"effdl.quantize_rows: x must be float32, bfloat16 or float16, got {x.dtype}")
        return x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)

    @torch.library.register_fake("effdl::int8_linear")
    def _int8_linear_fake(q, q_scale, wq, w_scale, bias=None, out_dtype=None):
        torch._check(q.dim() >= 1 and q.dtype == torch.int8, lambda: f"effdl.int8_linear: q must be an int8 tensor [*, K], got {q.dtype} of shape {list(q.shape)}")
        torch._check(wq.dim() == 2 and wq.dtype == torch.int8, lambda: f"effdl.int8_linear: wq must be a 2-D int8 tensor [N, K], got {wq.dtype} of shape {list(wq.shape)}")
        K, N = q.shape[-1], wq.shape[0]
        torch._check(wq.shape[1] == K, lambda: f"effdl.int8_linear: wq must have K={K} columns to match q, got shape {list(wq.shape)}")
        torch._check(K <= reference.INT8_MAX_K, lambda: f"effdl.int8_linear: K={K} exceeds {reference.INT8_MAX_K}, beyond which the int32 accumulator could overflow")
        torch._check(q_scale.dtype == torch.float32 and q_scale.shape == q.shape[:-1], lambda: f"effdl.int8_linear: q_scale must be float32 with shape {list(q.shape[:-1])} (q's leading dims)")
        torch._check(w_scale.dtype == torch.float32 and w_scale.dim() == 1 and w_scale.shape[0] == N, lambda: f"effdl.int8_linear: w_scale must be float32 with shape [{N}]")
        _check_vector(bias, "bias", N, "int8_linear")
        if bias is not None:
            torch._check(bias.dtype in _ACT_FLOATS, lambda: f"effdl.int8_linear: bias must be float32, bfloat16 or float16, got {bias.dtype}")
        out = out_dtype or torch.float32
        torch._check(out in _ACT_FLOATS, lambda: f"effdl.int8_linear: out_dtype must be float32, bfloat16 or float16, got {out}")
        return q.new_empty(_linear_out_shape(q, N), dtype=out)

    @torch.library.register_fake("effdl::int8_weight_linear")
    def _int8_weight_linear_fake(x, wq, w_scale, bias=None):
        torch._check(x.dim() >= 1 and x.dtype in _ACT_FLOATS, lambda: f"effdl.int8_weight_linear: x must be a float32, bfloat16 or float16 tensor [*, K], got {x.dtype}")
        torch._check(wq.dim() == 2 and wq.dtype == torch.int8, lambda: f"effdl.int8_weight_linear: wq must be a 2-D int8 tensor [N, K], got {wq.dtype} of shape {list(wq.shape)}")
        K, N = x.shape[-1], wq.shape[0]
        torch._check(wq.shape[1] == K, lambda: f"effdl.int8_weight_linear: wq must have K={K} columns to match x, got shape {list(wq.shape)}")
        torch._check(w_scale.dtype == torch.float32 and w_scale.dim() == 1 and w_scale.shape[0] == N, lambda: f"effdl.int8_weight_linear: w_scale must be float32 with shape [{N}]")
        _check_vector(bias, "bias", N, "int8_weight_linear")
        if bias is not None:
            torch._check(bias.dtype == x.dtype, lambda: f"effdl.int8_weight_linear: bias dtype {bias.dtype} must match x dtype {x.dtype}")
        return x.new_empty(_linear_out_shape(x, N))

    @torch.library.register_fake("effdl::dwsep_conv2d")
    def _dwsep_conv2d_fake(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                           dw_activation, pw_activation):
        B, _, Ho, Wo, Cout = _dwsep_shape(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                                          dw_activation, pw_activation)
        fmt = torch.channels_last if _keeps_channels_last(x) else torch.contiguous_format
        return x.new_empty((B, Cout, Ho, Wo)).contiguous(memory_format=fmt)


def _keeps_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _dwsep_shape(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, dw_activation, pw_activation):
    op = "dwsep_conv2d"
    torch._check(x.dim() == 4, lambda: f"effdl.dwsep_conv2d: x must be 4-D [B, C, H, W], got shape {list(x.shape)}")
    torch._check(x.dtype in _FLOATS, lambda: f"effdl.dwsep_conv2d: x must be float32, float64, bfloat16 or float16, got {x.dtype}")
    B, C, H, W = x.shape
    torch._check(dw_weight.dim() == 4 and dw_weight.shape[0] == C and dw_weight.shape[1] == 1,
                 lambda: f"effdl.dwsep_conv2d: dw_weight must have shape [{C}, 1, kh, kw], got {list(dw_weight.shape)}")
    torch._check(pw_weight.dim() == 4 and pw_weight.shape[1] == C and pw_weight.shape[2] == 1 and pw_weight.shape[3] == 1,
                 lambda: f"effdl.dwsep_conv2d: pw_weight must have shape [Cout, {C}, 1, 1], got {list(pw_weight.shape)}")
    for name, t in (("dw_weight", dw_weight), ("pw_weight", pw_weight), ("dw_bias", dw_bias), ("pw_bias", pw_bias)):
        if t is not None:
            torch._check(t.dtype == x.dtype, lambda name=name, t=t: f"effdl.dwsep_conv2d: {name} dtype {t.dtype} must match x dtype {x.dtype}")
    Cout = pw_weight.shape[0]
    _check_vector(dw_bias, "dw_bias", C, op)
    _check_vector(pw_bias, "pw_bias", Cout, op)
    torch._check(len(stride) == 2 and stride[0] > 0 and stride[1] > 0, lambda: f"effdl.dwsep_conv2d: stride must be two positive ints, got {list(stride)}")
    torch._check(len(padding) == 2 and padding[0] >= 0 and padding[1] >= 0, lambda: f"effdl.dwsep_conv2d: padding must be two non-negative ints, got {list(padding)}")
    torch._check(len(dilation) == 2 and dilation[0] > 0 and dilation[1] > 0, lambda: f"effdl.dwsep_conv2d: dilation must be two positive ints, got {list(dilation)}")
    for arg, name in (("dw_activation", dw_activation), ("pw_activation", pw_activation)):
        torch._check(name in reference.ACTIVATIONS, lambda arg=arg, name=name: f"effdl.dwsep_conv2d: {arg} must be one of 'none', 'relu', 'relu6', got '{name}'")
    kh, kw = dw_weight.shape[2], dw_weight.shape[3]
    span_h = H + 2 * padding[0] - dilation[0] * (kh - 1) - 1
    span_w = W + 2 * padding[1] - dilation[1] * (kw - 1) - 1
    Ho = span_h // stride[0] + 1 if span_h >= 0 else 0
    Wo = span_w // stride[1] + 1 if span_w >= 0 else 0
    torch._check(kh > 0 and kw > 0 and Ho > 0 and Wo > 0, lambda: f"effdl.dwsep_conv2d: the output would be empty: input {H}x{W}, kernel {kh}x{kw}")
    return B, C, Ho, Wo, Cout


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
        w = torch.ops.effdl.nm_decompress(values, meta, n, m)
        gx = (g2 @ w).reshape(x.shape)
    if ctx.needs_input_grad[1]:
        # dense dW = g.T @ x, read back only at the kept positions: the pattern holds
        cols = formats.kept_columns(meta, K, n, m)
        gw = g2.t().to(_acc(x.dtype)) @ x.reshape(-1, K).to(_acc(x.dtype))
        gv = gw.gather(1, cols).to(values.dtype)
    if ctx.has_bias and ctx.needs_input_grad[5]:
        gb = g2.sum(0)
    return gx, gv, None, None, None, gb


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _act_grad(grad: torch.Tensor, out: torch.Tensor, name: str) -> torch.Tensor:
    """Gradient through relu / relu6 / none, read off the activation's output."""
    if name == "relu":
        return grad * (out > 0)
    if name == "relu6":
        return grad * ((out > 0) & (out < 6))
    return grad


def _dwsep_setup(ctx, inputs, output):
    x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, dw_act, pw_act = inputs
    ctx.save_for_backward(x, dw_weight, dw_bias, pw_weight, output)
    ctx.conf = (list(stride), list(padding), list(dilation), dw_act, pw_act, pw_bias is not None)


def _dwsep_backward(ctx, grad_y):
    x, dw_weight, dw_bias, pw_weight, y = ctx.saved_tensors
    stride, padding, dilation, dw_act, pw_act, has_pw_bias = ctx.conf
    C = x.shape[1]
    ct = _acc(x.dtype)
    xc, dwc, pwc = x.to(ct), dw_weight.to(ct), pw_weight.to(ct)
    # recompute the depthwise activation the fused forward never stored
    a = reference.activation(
        F.conv2d(xc, dwc, None if dw_bias is None else dw_bias.to(ct), stride, padding, dilation, groups=C), dw_act
    )
    gz = _act_grad(grad_y.to(ct), y.to(ct), pw_act)
    pw2 = pwc.flatten(1)  # [Cout, C]
    g_pw = torch.einsum("bohw,bchw->oc", gz, a).reshape(pw_weight.shape)
    g_a = torch.einsum("bohw,oc->bchw", gz, pw2)
    g_u = _act_grad(g_a, a, dw_act)
    g_x = torch.nn.grad.conv2d_input(list(x.shape), dwc, g_u, stride, padding, dilation, groups=C)
    g_dw = torch.nn.grad.conv2d_weight(xc, list(dw_weight.shape), g_u, stride, padding, dilation, groups=C)
    g_dwb = g_u.sum((0, 2, 3)) if dw_bias is not None else None
    g_pwb = gz.sum((0, 2, 3)) if has_pw_bias else None

    def back(t, like):
        return None if t is None else t.to(like.dtype)

    return (back(g_x, x), back(g_dw, dw_weight), back(g_dwb, x), back(g_pw, pw_weight), back(g_pwb, x),
            None, None, None, None, None)


if _ext.available():
    torch.library.register_autograd("effdl::nm_linear", _nm_linear_backward, setup_context=_nm_linear_setup)
    torch.library.register_autograd("effdl::dwsep_conv2d", _dwsep_backward, setup_context=_dwsep_setup)
