"""Pure-PyTorch reference of every effdl operator.

These are the test oracles (call them on float64 inputs for float ops) and the
``"reference"`` backend: same signatures, semantics, output dtypes and memory
formats as ``torch.ops.effdl.*``, on any device PyTorch supports. 16-bit inputs
compute in float32, like the kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from effdl import _checks, formats

QUANT_SCALE_EPS = torch.finfo(torch.float32).tiny  # smallest normal fp32
INT8_MAX_K = _checks.INT8_MAX_K
ACTIVATIONS = _checks.ACTIVATIONS


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulator dtype of the kernels: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def nm_compress(w: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``w[rows, K]`` (already N:M sparse) -> ``(values[rows, K*n/m], meta[rows, ceil(K/8)] uint8)``."""
    _checks.nm_compress(w, n, m)
    meta = formats.pack_mask(formats.keep_mask(w, n, m))
    return w.gather(1, formats.kept_columns(meta, w.shape[1], n, m)), meta


def _valid_mask_k(values, meta, n: int, m: int, op: str) -> int:
    try:
        return formats.validate(values, meta, n, m)
    except ValueError as exc:
        raise RuntimeError(f"effdl.{op}: meta is not a valid {n}:{m} mask ({exc})") from None


def nm_decompress(values: torch.Tensor, meta: torch.Tensor, n: int, m: int, _op: str = "nm_decompress") -> torch.Tensor:
    """Exact inverse of :func:`nm_compress`: dense ``[rows, K]``."""
    _checks.nm_storage(values, meta, n, m, _op)
    K = _valid_mask_k(values, meta, n, m, _op)
    cols = formats.kept_columns(meta, K, n, m)
    return torch.zeros(values.shape[0], K, dtype=values.dtype, device=values.device).scatter(1, cols, values)


def nm_linear(x, values, meta, n: int, m: int, bias=None):
    """``x[*, K] @ W.T + bias`` with ``W = nm_decompress(values, meta)``; differentiable."""
    _checks.nm_linear(x, values, meta, n, m, bias)
    w = nm_decompress(values, meta, n, m, _op="nm_linear")
    ct = compute_dtype(x.dtype)
    y = F.linear(x.to(ct), w.to(ct), None if bias is None else bias.to(ct))
    return y.to(x.dtype)


def nm_pack_weight(values: torch.Tensor, meta: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """A 2:4 weight (``values[N, K/2]`` + ``meta``) -> the panels of ``nm_linear_packed``
    (``values.dtype``, ``[ceil(N/16), 32 K/4 + (64 / itemsize) ceil(K/32)]``): per 16 output
    columns, each group's 16 kept pairs side by side, then per 8 groups 16 little-endian uint32
    words holding each column's keep-nibbles (group 8w + j in bits 4j..4j+3). Zero past N."""
    K = _checks.nm_pack_weight(values, meta, n, m)
    _valid_mask_k(values, meta, n, m, "nm_pack_weight")
    N, G, C = values.shape[0], K // 4, _checks.NM_PANEL_COLS
    P, W = -(-N // C), -(-G // _checks.NM_WORD_GROUPS)
    pairs = torch.zeros(P * C, G, 2, dtype=values.dtype, device=values.device)
    pairs[:N] = values.reshape(N, G, 2)
    pairs = pairs.view(P, C, G, 2).transpose(1, 2).reshape(P, G * 2 * C)
    nib = torch.zeros(P * C, W * _checks.NM_WORD_GROUPS, dtype=torch.int64, device=values.device)
    bits = torch.stack([meta & 15, meta >> 4], dim=-1).reshape(N, 2 * meta.shape[1])[:, :G].long()  # a nibble per group
    nib[:N, :G] = bits
    shifts = 4 * torch.arange(_checks.NM_WORD_GROUPS, device=values.device)
    words = (nib.view(P * C, W, _checks.NM_WORD_GROUPS) << shifts).sum(-1)  # [P*16, W], < 2**32
    words = words.view(P, C, W).transpose(1, 2).reshape(P, W * C)
    word_bytes = torch.stack([(words >> (8 * b)) & 255 for b in range(4)], dim=-1).to(torch.uint8)
    blocks = word_bytes.reshape(P, W * C * 4).view(values.dtype) if W else values.new_zeros(P, 0)
    return torch.cat([pairs, blocks], dim=1)


def nm_unpack_weight(packed: torch.Tensor, N: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2:4 ``(values[N, K/2], meta[N, ceil(K/8)])`` whose :func:`nm_pack_weight` is ``packed``."""
    G, C = K // 4, _checks.NM_PANEL_COLS
    P, W = packed.shape[0], -(-G // _checks.NM_WORD_GROUPS)
    pairs = packed[:, : G * 2 * C].reshape(P, G, C, 2).transpose(1, 2).reshape(P * C, G * 2)
    word_bytes = packed[:, G * 2 * C:].contiguous().view(torch.uint8).reshape(P, W, C, 4).long()
    words = (word_bytes << (8 * torch.arange(4, device=packed.device))).sum(-1)  # [P, W, 16]
    words = words.transpose(1, 2).reshape(P * C, W)
    shifts = 4 * torch.arange(_checks.NM_WORD_GROUPS, device=packed.device)
    nib = ((words.unsqueeze(-1) >> shifts) & 15).reshape(P * C, W * _checks.NM_WORD_GROUPS)[:N, :G]
    nib = torch.cat([nib, nib.new_zeros(N, G % 2)], dim=1)  # an odd last group fills half a byte
    meta = (nib[:, 0::2] | (nib[:, 1::2] << 4)).to(torch.uint8)
    return pairs[:N].contiguous(), meta


def nm_linear_packed(x, packed, N: int, bias=None):
    """:func:`nm_linear` with the 2:4 weight given as its :func:`nm_pack_weight` (``K`` from ``x``)."""
    K = _checks.nm_linear_packed(x, packed, N, bias)
    values, meta = nm_unpack_weight(packed, N, K)
    try:
        return nm_linear(x, values, meta, 2, 4, bias)
    except RuntimeError as exc:
        raise RuntimeError("effdl.nm_linear_packed: packed is not a 2:4 weight packed by nm_pack_weight "
                           f"({exc})") from None


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric int8 per row of ``x[*, K]``: ``(q int8 [*, K], scale fp32 [*])``."""
    _checks.quantize_rows(x)
    xf = x.float()
    if not bool(torch.isfinite(xf).all()):
        raise RuntimeError("effdl.quantize_rows: x holds NaN or Inf; int8 cannot represent it")
    if x.shape[-1] == 0:
        absmax = torch.zeros(x.shape[:-1], dtype=torch.float32, device=x.device)
    else:
        absmax = xf.abs().amax(-1)
    scale = torch.clamp(absmax / 127.0, min=QUANT_SCALE_EPS)
    q = torch.round(xf / scale.unsqueeze(-1)).clamp(-127, 127).to(torch.int8)
    return q, scale


def int8_matmul_exact(q: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """``q[*, K] @ wq[N, K].T`` as exact int32 (float64 products are exact below 2**53)."""
    acc = torch.matmul(q.to(torch.float64), wq.to(torch.float64).t())
    return acc.to(torch.int32)


def _int8_epilogue(acc: torch.Tensor, q_scale, w_scale, bias, out_dtype) -> torch.Tensor:
    """``float(acc) * q_scale[*, None] * w_scale (+ bias)`` in fp32, in the kernels' order, cast to ``out_dtype``."""
    y = acc.to(torch.float32) * q_scale.unsqueeze(-1) * w_scale
    if bias is not None:
        y = y + bias.float()
    return y.to(out_dtype)


def int8_linear(q, q_scale, wq, w_scale, bias=None, out_dtype=None):
    """``float(q @ wq.T) * q_scale[*, None] * w_scale + bias`` in fp32, cast to ``out_dtype`` (default fp32)."""
    out_dtype = _checks.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype)
    return _int8_epilogue(int8_matmul_exact(q, wq), q_scale, w_scale, bias, out_dtype)


def int8_pack_weight(wq: torch.Tensor) -> torch.Tensor:
    """``wq[N, K]`` int8 -> the panels of ``int8_linear_packed`` (``[ceil(N/16), 64 ceil(K/4) + 64]`` int8):
    per 16 output columns, ``ceil(K/4)`` groups of 16 columns x 4 k-bytes, then the columns'
    ``128 * sum_k wq`` as 16 int32 in native byte order. Zero past N and K."""
    _checks.int8_pack_weight(wq)
    N, K = wq.shape
    P, G = -(-N // _checks.PANEL_COLS), -(-K // _checks.GROUP_K)
    w = torch.zeros(P * _checks.PANEL_COLS, G * _checks.GROUP_K, dtype=torch.int8, device=wq.device)
    w[:N, :K] = wq
    group_bytes = _checks.PANEL_COLS * _checks.GROUP_K
    groups = w.view(P, _checks.PANEL_COLS, G, _checks.GROUP_K).permute(0, 2, 1, 3).reshape(P, G * group_bytes)
    shift = (w.view(P, _checks.PANEL_COLS, G * _checks.GROUP_K).sum(-1, dtype=torch.int32) * 128).contiguous()
    return torch.cat([groups, shift.view(torch.int8)], dim=1)


def int8_unpack_weight(packed: torch.Tensor, N: int, K: int) -> torch.Tensor:
    """The ``wq[N, K]`` whose :func:`int8_pack_weight` is ``packed`` (its weight bytes; the column sums are not read)."""
    P, G = -(-N // _checks.PANEL_COLS), -(-K // _checks.GROUP_K)
    groups = packed[:, : G * _checks.PANEL_COLS * _checks.GROUP_K]
    w = groups.reshape(P, G, _checks.PANEL_COLS, _checks.GROUP_K).permute(0, 2, 1, 3)
    return w.reshape(P * _checks.PANEL_COLS, G * _checks.GROUP_K)[:N, :K]


def int8_linear_packed(q, q_scale, packed, w_scale, bias=None, out_dtype=None):
    """:func:`int8_linear` with ``wq`` given as its :func:`int8_pack_weight` (``N`` from ``w_scale``)."""
    out_dtype = _checks.int8_linear_packed(q, q_scale, packed, w_scale, bias, out_dtype)
    wq = int8_unpack_weight(packed, w_scale.shape[0], q.shape[-1])
    return _int8_epilogue(int8_matmul_exact(q, wq), q_scale, w_scale, bias, out_dtype)


def nm_int8_decompress(values_q: torch.Tensor, meta: torch.Tensor, n: int, m: int,
                       _op: str = "nm_int8_linear") -> torch.Tensor:
    """The dense int8 ``[N, K]`` weight of an N:M int8 pair (zeros where pruned); validates ``meta``."""
    K = _valid_mask_k(values_q, meta, n, m, _op)
    cols = formats.kept_columns(meta, K, n, m)
    return torch.zeros(values_q.shape[0], K, dtype=values_q.dtype, device=values_q.device).scatter(1, cols, values_q)


def nm_int8_linear(q, q_scale, values_q, meta, n: int, m: int, w_scale, bias=None, out_dtype=None):
    """``int8_linear`` with ``wq`` given in N:M compressed form (``values_q`` int8 + ``meta``)."""
    out_dtype = _checks.nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype)
    wq = nm_int8_decompress(values_q, meta, n, m)
    return _int8_epilogue(int8_matmul_exact(q, wq), q_scale, w_scale, bias, out_dtype)


def int8_weight_linear(x, wq, w_scale, bias=None):
    """Weight-only int8: ``x @ (wq * w_scale[:, None]).T + bias`` in ``x``'s dtype."""
    _checks.int8_weight_linear(x, wq, w_scale, bias)
    ct = compute_dtype(x.dtype)
    y = F.linear(x.to(ct), wq.to(ct)) * w_scale.to(ct)
    if bias is not None:
        y = y + bias.to(ct)
    return y.to(x.dtype)


def activation(t: torch.Tensor, name: str) -> torch.Tensor:
    if name == "none":
        return t
    if name == "relu":
        return F.relu(t)
    if name == "relu6":
        return F.relu6(t)
    raise RuntimeError(f"effdl.dwsep_conv2d: activation must be one of {ACTIVATIONS}, got {name!r}")


def dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                 dw_activation: str, pw_activation: str):
    """Depthwise conv -> activation -> 1x1 conv -> activation; output keeps ``x``'s memory format."""
    _checks.dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                         dw_activation, pw_activation)
    ct = compute_dtype(x.dtype)

    def cast(t):
        return None if t is None else t.to(ct)

    d = F.conv2d(x.to(ct), cast(dw_weight), cast(dw_bias), stride, padding, dilation, groups=x.shape[1])
    d = activation(d, dw_activation)
    y = activation(F.conv2d(d, cast(pw_weight), cast(pw_bias)), pw_activation).to(x.dtype)
    fmt = torch.channels_last if _checks.keeps_channels_last(x) else torch.contiguous_format
    return y.contiguous(memory_format=fmt)
