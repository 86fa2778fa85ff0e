"""The native input checks (csrc/checks.cpp), mirrored once in Python.

Used by the fake kernels (so ``torch.compile`` / ``torch.export`` raise the same
errors and compute the same output shapes) and by the reference backend (so
every backend rejects the same inputs). ``torch._check`` raises
``RuntimeError`` with the message, like ``TORCH_CHECK``.
"""

from __future__ import annotations

import torch

from effdl.formats import meta_bytes

FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
ACT_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
ACTIVATIONS = ("none", "relu", "relu6")
INT8_MAX_K = 131071  # K * 128 * 128 <= 2**31 - 1 keeps the int32 accumulator exact


def _same_device(ref: torch.Tensor, ref_name: str, t: torch.Tensor, name: str, op: str) -> None:
    torch._check(t.device == ref.device, lambda: f"effdl.{op}: {name} must be on {ref_name}'s device {ref.device}, got {t.device}")


def _vector(t: torch.Tensor | None, name: str, size: int, ref: torch.Tensor, op: str) -> None:
    if t is None:
        return
    torch._check(t.dim() == 1 and t.shape[0] == size, lambda: f"effdl.{op}: {name} must have shape [{size}], got {list(t.shape)}")
    _same_device(ref, "the input", t, name, op)


def nm_pattern(n: int, m: int, op: str) -> None:
    torch._check(2 <= m <= 16 and 1 <= n < m, lambda: f"effdl.{op}: the N:M pattern needs 1 <= n < m <= 16, got n={n}, m={m}")


def nm_compress(w: torch.Tensor, n: int, m: int) -> None:
    nm_pattern(n, m, "nm_compress")
    torch._check(w.dim() == 2, lambda: f"effdl.nm_compress: w must be 2-D [rows, K], got shape {list(w.shape)}")
    torch._check(w.dtype in FLOATS, lambda: f"effdl.nm_compress: w must be float32, float64, bfloat16 or float16, got {w.dtype}")
    torch._check(w.shape[1] % m == 0, lambda: f"effdl.nm_compress: w's last dim K={w.shape[1]} must be a multiple of m={m} "
                                                        "(pad K or choose another m)")


def _nm_meta(values: torch.Tensor, values_name: str, meta: torch.Tensor, n: int, m: int, op: str) -> int:
    """meta [rows, ceil(K/8)] uint8 beside values [rows, K*n/m]; returns K."""
    torch._check(meta.dim() == 2 and meta.dtype == torch.uint8,
                 lambda: f"effdl.{op}: meta must be a 2-D uint8 tensor, got {meta.dtype} of shape {list(meta.shape)}")
    _same_device(values, values_name, meta, "meta", op)
    torch._check(values.shape[1] % n == 0,
                 lambda: f"effdl.{op}: {values_name}' last dim {values.shape[1]} must be a multiple of n={n}")
    K = values.shape[1] // n * m
    torch._check(meta.shape[0] == values.shape[0] and meta.shape[1] == meta_bytes(K),
                 lambda: f"effdl.{op}: meta must have shape [{values.shape[0]}, {meta_bytes(K)}] for {values_name} of shape "
                         f"{list(values.shape)} (K={K}), got {list(meta.shape)}")
    return K


def nm_storage(values: torch.Tensor, meta: torch.Tensor, n: int, m: int, op: str) -> int:
    """Returns K."""
    nm_pattern(n, m, op)
    torch._check(values.dim() == 2, lambda: f"effdl.{op}: values must be 2-D [rows, K*n/m], got shape {list(values.shape)}")
    torch._check(values.dtype in FLOATS, lambda: f"effdl.{op}: values must be float32, float64, bfloat16 or float16, got {values.dtype}")
    return _nm_meta(values, "values", meta, n, m, op)


def nm_linear(x, values, meta, n, m, bias) -> int:
    """Returns K."""
    K = nm_storage(values, meta, n, m, "nm_linear")
    torch._check(x.dim() >= 1 and x.shape[-1] == K,
                 lambda: f"effdl.nm_linear: x must have shape [*, {K}] to match the weight (K={K}), got {list(x.shape)}")
    torch._check(x.dtype == values.dtype, lambda: f"effdl.nm_linear: x dtype {x.dtype} must match values dtype {values.dtype}")
    _same_device(values, "values", x, "x", "nm_linear")
    _vector(bias, "bias", values.shape[0], values, "nm_linear")
    if bias is not None:
        torch._check(bias.dtype == values.dtype, lambda: f"effdl.nm_linear: bias dtype {bias.dtype} must match values dtype {values.dtype}")
    return K


# nm_pack_weight's panels (csrc/core/nm_packed.h): 16 output columns, a pair per column per
# group of 4, then per 8 groups one 64-byte block of the columns' keep-nibbles
NM_PANEL_COLS = 16
NM_WORD_GROUPS = 8
NM_BLOCK_BYTES = 64


def nm_packed_shape(N: int, K: int, dtype: torch.dtype) -> list[int]:
    """The shape of ``nm_pack_weight`` of a ``[N, K]`` 2:4 weight of ``dtype``: one row per panel
    of 16 output columns, holding ``32 * K/4`` values and ``ceil(K/32)`` 64-byte nibble blocks."""
    G = K // 4
    return [-(-N // NM_PANEL_COLS), G * 2 * NM_PANEL_COLS + -(-G // NM_WORD_GROUPS) * (NM_BLOCK_BYTES // dtype.itemsize)]


def nm_pack_weight(values, meta, n, m) -> int:
    """Returns K."""
    K = nm_storage(values, meta, n, m, "nm_pack_weight")
    torch._check(n == 2 and m == 4, lambda: f"effdl.nm_pack_weight: the packed layout is for 2:4 weights, got {n}:{m} "
                                            "(use effdl.ops.nm_linear on the canonical values and meta)")
    return K


def nm_linear_packed(x, packed, N, bias) -> int:
    """Returns K."""
    op = "nm_linear_packed"
    torch._check(x.dim() >= 1 and x.dtype in FLOATS,
                 lambda: f"effdl.nm_linear_packed: x must be a float32, float64, bfloat16 or float16 tensor [*, K], "
                         f"got {x.dtype} of shape {list(x.shape)}")
    K = x.shape[-1]
    torch._check(K % 4 == 0, lambda: f"effdl.nm_linear_packed: x's last dim K={K} must be a multiple of 4 (2:4 weights)")
    torch._check(N >= 0, lambda: f"effdl.nm_linear_packed: N must be >= 0, got {N}")
    want = nm_packed_shape(N, K, x.dtype)
    torch._check(packed.dtype == x.dtype and list(packed.shape) == want,
                 lambda: f"effdl.nm_linear_packed: packed must be the {x.dtype} tensor of shape {want} that nm_pack_weight "
                         f"makes of a [{N}, {K}] 2:4 weight (K from x), got {packed.dtype} of shape {list(packed.shape)}")
    _same_device(x, "x", packed, "packed", op)
    _vector(bias, "bias", N, x, op)
    if bias is not None:
        torch._check(bias.dtype == x.dtype, lambda: f"effdl.nm_linear_packed: bias dtype {bias.dtype} must match x dtype {x.dtype}")
    return K


def quantize_rows(x: torch.Tensor) -> None:
    torch._check(x.dim() >= 1, lambda: "effdl.quantize_rows: x must have at least 1 dim [*, K], got a scalar")
    torch._check(x.dtype in ACT_FLOATS, lambda: f"effdl.quantize_rows: x must be float32, bfloat16 or float16, got {x.dtype}")


def _int8_scales(q, q_scale, w_scale, N: int, bias, out_dtype, op: str) -> torch.dtype:
    """What int8_linear and int8_linear_packed share past their weight; returns the output dtype."""
    K = q.shape[-1]
    torch._check(K <= INT8_MAX_K,
                 lambda: f"effdl.{op}: K={K} exceeds {INT8_MAX_K}, beyond which the int32 accumulator could overflow")
    torch._check(q_scale.dtype == torch.float32 and q_scale.shape == q.shape[:-1],
                 lambda: f"effdl.{op}: q_scale must be float32 with shape {list(q.shape[:-1])} (q's leading dims), "
                         f"got {q_scale.dtype} of shape {list(q_scale.shape)}")
    torch._check(w_scale.dtype == torch.float32 and w_scale.dim() == 1 and w_scale.shape[0] == N,
                 lambda: f"effdl.{op}: w_scale must be float32 with shape [{N}], got {w_scale.dtype} of shape {list(w_scale.shape)}")
    for name, t in (("q_scale", q_scale), ("w_scale", w_scale)):
        _same_device(q, "q", t, name, op)
    _vector(bias, "bias", N, q, op)
    if bias is not None:
        torch._check(bias.dtype in ACT_FLOATS, lambda: f"effdl.{op}: bias must be float32, bfloat16 or float16, got {bias.dtype}")
    out = out_dtype or torch.float32
    torch._check(out in ACT_FLOATS, lambda: f"effdl.{op}: out_dtype must be float32, bfloat16 or float16, got {out}")
    return out


def int8_linear(q, q_scale, wq, w_scale, bias, out_dtype) -> torch.dtype:
    """Returns the output dtype."""
    torch._check(q.dim() >= 1 and q.dtype == torch.int8,
                 lambda: f"effdl.int8_linear: q must be an int8 tensor [*, K], got {q.dtype} of shape {list(q.shape)}")
    torch._check(wq.dim() == 2 and wq.dtype == torch.int8,
                 lambda: f"effdl.int8_linear: wq must be a 2-D int8 tensor [N, K], got {wq.dtype} of shape {list(wq.shape)}")
    K, N = q.shape[-1], wq.shape[0]
    torch._check(wq.shape[1] == K, lambda: f"effdl.int8_linear: wq must have K={K} columns to match q, got shape {list(wq.shape)}")
    _same_device(q, "q", wq, "wq", "int8_linear")
    return _int8_scales(q, q_scale, w_scale, N, bias, out_dtype, "int8_linear")


# int8_pack_weight's panels (csrc/core/int8_packed.h): 16 output columns x 4 k-bytes per 64-byte group
PANEL_COLS = 16
GROUP_K = 4


def int8_packed_shape(N: int, K: int) -> list[int]:
    """The shape of ``int8_pack_weight`` of a ``[N, K]`` weight: one row per panel of 16 output
    columns, holding ``ceil(K/4)`` 64-byte groups and 16 int32 column sums."""
    return [-(-N // PANEL_COLS), -(-K // GROUP_K) * PANEL_COLS * GROUP_K + PANEL_COLS * 4]


def int8_pack_weight(wq) -> None:
    torch._check(wq.dim() == 2 and wq.dtype == torch.int8,
                 lambda: f"effdl.int8_pack_weight: wq must be a 2-D int8 tensor [N, K], got {wq.dtype} of shape {list(wq.shape)}")
    torch._check(wq.shape[1] <= INT8_MAX_K,
                 lambda: f"effdl.int8_pack_weight: K={wq.shape[1]} exceeds {INT8_MAX_K}, beyond which the int32 "
                         "accumulator could overflow")


def int8_linear_packed(q, q_scale, packed, w_scale, bias, out_dtype) -> torch.dtype:
    """Returns the output dtype."""
    op = "int8_linear_packed"
    torch._check(q.dim() >= 1 and q.dtype == torch.int8,
                 lambda: f"effdl.int8_linear_packed: q must be an int8 tensor [*, K], got {q.dtype} of shape {list(q.shape)}")
    torch._check(w_scale.dim() == 1,
                 lambda: f"effdl.int8_linear_packed: w_scale must be float32 with shape [N], got {w_scale.dtype} "
                         f"of shape {list(w_scale.shape)}")
    K, N = q.shape[-1], w_scale.shape[0]
    want = int8_packed_shape(N, K)
    torch._check(packed.dtype == torch.int8 and list(packed.shape) == want,
                 lambda: f"effdl.int8_linear_packed: packed must be the int8 tensor of shape {want} that int8_pack_weight "
                         f"makes of a [{N}, {K}] weight (N from w_scale, K from q), got {packed.dtype} of shape "
                         f"{list(packed.shape)}")
    _same_device(q, "q", packed, "packed", op)
    return _int8_scales(q, q_scale, w_scale, N, bias, out_dtype, op)


def nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype) -> torch.dtype:
    """Returns the output dtype."""
    op = "nm_int8_linear"
    nm_pattern(n, m, op)
    torch._check(q.dim() >= 1 and q.dtype == torch.int8,
                 lambda: f"effdl.nm_int8_linear: q must be an int8 tensor [*, K], got {q.dtype} of shape {list(q.shape)}")
    torch._check(values_q.dim() == 2 and values_q.dtype == torch.int8,
                 lambda: f"effdl.nm_int8_linear: values_q must be a 2-D int8 tensor [N, K*n/m], got {values_q.dtype} "
                         f"of shape {list(values_q.shape)}")
    _same_device(q, "q", values_q, "values_q", op)
    K = _nm_meta(values_q, "values_q", meta, n, m, op)
    N, kept = values_q.shape
    torch._check(q.shape[-1] == K,
                 lambda: f"effdl.nm_int8_linear: q must have shape [*, {K}] to match the weight (K={K}), got {list(q.shape)}")
    # the int32 sum runs over the kept products only
    torch._check(kept <= INT8_MAX_K,
                 lambda: f"effdl.nm_int8_linear: K*n/m={kept} kept products (K={K}, {n}:{m}) exceed {INT8_MAX_K}, "
                         "beyond which the int32 accumulator could overflow")
    torch._check(q_scale.dtype == torch.float32 and q_scale.shape == q.shape[:-1],
                 lambda: f"effdl.nm_int8_linear: q_scale must be float32 with shape {list(q.shape[:-1])} (q's leading dims), "
                         f"got {q_scale.dtype} of shape {list(q_scale.shape)}")
    torch._check(w_scale.dtype == torch.float32 and w_scale.dim() == 1 and w_scale.shape[0] == N,
                 lambda: f"effdl.nm_int8_linear: w_scale must be float32 with shape [{N}], got {w_scale.dtype} "
                         f"of shape {list(w_scale.shape)}")
    _same_device(q, "q", q_scale, "q_scale", op)
    _same_device(q, "q", w_scale, "w_scale", op)
    _vector(bias, "bias", N, q, op)
    if bias is not None:
        torch._check(bias.dtype in ACT_FLOATS,
                     lambda: f"effdl.nm_int8_linear: bias must be float32, bfloat16 or float16, got {bias.dtype}")
    out = out_dtype or torch.float32
    torch._check(out in ACT_FLOATS, lambda: f"effdl.nm_int8_linear: out_dtype must be float32, bfloat16 or float16, got {out}")
    return out


def int8_weight_linear(x, wq, w_scale, bias) -> None:
    torch._check(x.dim() >= 1 and x.dtype in ACT_FLOATS,
                 lambda: f"effdl.int8_weight_linear: x must be a float32, bfloat16 or float16 tensor [*, K], got {x.dtype} of shape {list(x.shape)}")
    torch._check(wq.dim() == 2 and wq.dtype == torch.int8,
                 lambda: f"effdl.int8_weight_linear: wq must be a 2-D int8 tensor [N, K], got {wq.dtype} of shape {list(wq.shape)}")
    K, N = x.shape[-1], wq.shape[0]
    torch._check(wq.shape[1] == K, lambda: f"effdl.int8_weight_linear: wq must have K={K} columns to match x, got shape {list(wq.shape)}")
    torch._check(w_scale.dtype == torch.float32 and w_scale.dim() == 1 and w_scale.shape[0] == N,
                 lambda: f"effdl.int8_weight_linear: w_scale must be float32 with shape [{N}], got {w_scale.dtype} of shape {list(w_scale.shape)}")
    _same_device(x, "x", wq, "wq", "int8_weight_linear")
    _same_device(x, "x", w_scale, "w_scale", "int8_weight_linear")
    _vector(bias, "bias", N, x, "int8_weight_linear")
    if bias is not None:
        torch._check(bias.dtype == x.dtype, lambda: f"effdl.int8_weight_linear: bias dtype {bias.dtype} must match x dtype {x.dtype}")


def activation_name(name: str, arg: str) -> None:
    torch._check(name in ACTIVATIONS, lambda: f"effdl.dwsep_conv2d: {arg} must be one of 'none', 'relu', 'relu6', got '{name}'")


def dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, dw_activation, pw_activation):
    """Returns (B, Cout, Ho, Wo)."""
    op = "dwsep_conv2d"
    torch._check(x.dim() == 4, lambda: f"effdl.dwsep_conv2d: x must be 4-D [B, C, H, W], got shape {list(x.shape)}")
    torch._check(x.dtype in FLOATS, lambda: f"effdl.dwsep_conv2d: x must be float32, float64, bfloat16 or float16, got {x.dtype}")
    B, C, H, W = x.shape
    torch._check(dw_weight.dim() == 4 and dw_weight.shape[0] == C and dw_weight.shape[1] == 1,
                 lambda: f"effdl.dwsep_conv2d: dw_weight must have shape [{C}, 1, kh, kw], got {list(dw_weight.shape)}")
    torch._check(pw_weight.dim() == 4 and pw_weight.shape[1] == C and pw_weight.shape[2] == 1 and pw_weight.shape[3] == 1,
                 lambda: f"effdl.dwsep_conv2d: pw_weight must have shape [Cout, {C}, 1, 1], got {list(pw_weight.shape)}")
    for name, t in (("dw_weight", dw_weight), ("pw_weight", pw_weight)):
        torch._check(t.dtype == x.dtype, lambda name=name, t=t: f"effdl.dwsep_conv2d: {name} dtype {t.dtype} must match x dtype {x.dtype}")
        _same_device(x, "x", t, name, op)
    Cout = pw_weight.shape[0]
    _vector(dw_bias, "dw_bias", C, x, op)
    _vector(pw_bias, "pw_bias", Cout, x, op)
    for name, t in (("dw_bias", dw_bias), ("pw_bias", pw_bias)):
        if t is not None:
            torch._check(t.dtype == x.dtype, lambda name=name, t=t: f"effdl.dwsep_conv2d: {name} dtype {t.dtype} must match x dtype {x.dtype}")
    torch._check(len(stride) == 2 and stride[0] > 0 and stride[1] > 0,
                 lambda: f"effdl.dwsep_conv2d: stride must be two positive ints, got {list(stride)}")
    torch._check(len(padding) == 2 and padding[0] >= 0 and padding[1] >= 0,
                 lambda: f"effdl.dwsep_conv2d: padding must be two non-negative ints, got {list(padding)}")
    torch._check(len(dilation) == 2 and dilation[0] > 0 and dilation[1] > 0,
                 lambda: f"effdl.dwsep_conv2d: dilation must be two positive ints, got {list(dilation)}")
    activation_name(dw_activation, "dw_activation")
    activation_name(pw_activation, "pw_activation")
    kh, kw = dw_weight.shape[2], dw_weight.shape[3]
    span_h = H + 2 * padding[0] - dilation[0] * (kh - 1) - 1
    span_w = W + 2 * padding[1] - dilation[1] * (kw - 1) - 1
    Ho = span_h // stride[0] + 1 if span_h >= 0 else 0
    Wo = span_w // stride[1] + 1 if span_w >= 0 else 0
    torch._check(kh > 0 and kw > 0 and Ho > 0 and Wo > 0,
                 lambda: f"effdl.dwsep_conv2d: the output would be empty: input {H}x{W}, kernel {kh}x{kw}, "
                         f"padding {list(padding)}, dilation {list(dilation)}")
    return B, Cout, Ho, Wo


def keeps_channels_last(x: torch.Tensor) -> bool:
    """dwsep_conv2d's output is channels_last exactly when x is channels_last
    contiguous and not also NCHW contiguous (as for [B, C, 1, 1])."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
