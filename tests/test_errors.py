"""Every input check: a ``RuntimeError`` whose message names the argument and the problem.

Each case builds its bad arguments fresh. Shape / dtype / pattern errors are
checked twice: on the native kernel and on the fake (meta) kernel under
``FakeTensorMode``, which must reject the same input with the same message.
Data-dependent errors (a weight breaking the pattern, corrupted meta, NaN/Inf)
can only be seen by the native kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from samples import int8, nm_int8_pack, nm_int8_weight, nm_pack, nm_weight, rand, scales
from torch._subclasses.fake_tensor import FakeTensorMode

from effdl import reference

E = torch.ops.effdl


@dataclass(frozen=True)
class Case:
    id: str
    op: str
    args: Callable[[], tuple]
    match: str
    fake: bool = True  # the fake sees it too (False: depends on the data)


def _nm(rows=3, K=8, n=2, m=4, dtype=torch.float32):
    values, meta = nm_pack(nm_weight(rows, K, n, m, dtype), n, m)
    return values, meta


def _corrupt_three_bits():
    values, meta = _nm(3, 8)
    meta[1, 0] = 0b00000111 | (meta[1, 0] & 0xF0)  # group 0 of row 1 keeps 3 positions
    return values, meta


def _corrupt_one_bit():
    values, meta = _nm(3, 8)
    meta[2, 0] = 0b00000001 | (meta[2, 0] & 0xF0)  # group 0 of row 2 keeps 1 position
    return values, meta


def _corrupt_past_k():
    values, meta = _nm(2, 12)  # K = 12: byte 1 uses bits 0..3 only
    meta[0, 1] |= 0b00100000  # a bit past K
    return values, meta


def _breaks_pattern():
    w = nm_weight(5, 12, 2, 4)
    w[3, 4:8] = torch.tensor([1.0, 2.0, 0.0, 3.0])  # row 3, group 1: 3 nonzeros
    w[4, 0:4] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a later row breaks it too
    return w


def _x(*shape, dtype=torch.float32):
    return rand(*shape, dtype=dtype)


def _lin(x, n=2, m=4, N=3, K=8, bias=None, dtype=torch.float32):
    values, meta = _nm(N, K, n, m, dtype)
    return (x, values, meta, n, m, bias)


def _nmp(x=None, N=3, K=8, packed=None, bias=None, dtype=torch.float32):
    """nm_linear_packed's arguments; packed defaults to the packing of a [3, K] weight."""
    return (_x(2, K, dtype=dtype) if x is None else x,
            reference.nm_pack_weight(*_nm(3, K, 2, 4, dtype), 2, 4) if packed is None else packed, N, bias)


def _i8(M=2, K=8, N=3, q=None, q_scale=None, wq=None, w_scale=None, bias=None, out_dtype=None):
    return (
        int8(M, K) if q is None else q,
        scales(M) if q_scale is None else q_scale,
        int8(N, K) if wq is None else wq,
        scales(N) if w_scale is None else w_scale,
        bias,
        out_dtype,
    )


def _i8p(M=2, K=8, N=3, q=None, q_scale=None, packed=None, w_scale=None, bias=None, out_dtype=None):
    return (
        int8(M, K) if q is None else q,
        scales(M) if q_scale is None else q_scale,
        reference.int8_pack_weight(int8(N, K)) if packed is None else packed,
        scales(N) if w_scale is None else w_scale,
        bias,
        out_dtype,
    )


def _ni8(M=2, K=8, N=3, n=2, m=4, q=None, q_scale=None, values_q=None, meta=None, w_scale=None, bias=None,
         out_dtype=None, corrupt=None):
    v, mt = nm_int8_pack(nm_int8_weight(N, K, n, m), n, m)
    if corrupt is not None:  # a meta byte that keeps 3 of the first group's 4 columns
        mt[corrupt, 0] = 0b00000111 | (mt[corrupt, 0] & 0xF0)
    return (
        int8(M, K) if q is None else q,
        scales(M) if q_scale is None else q_scale,
        v if values_q is None else values_q,
        mt if meta is None else meta,
        n, m,
        scales(N) if w_scale is None else w_scale,
        bias,
        out_dtype,
    )


def _ni8_past_bound():
    n, m, kept = 1, 2, 131072
    K = kept * m
    return (int8(1, K), scales(1), int8(2, kept), torch.full((2, K // 8), 0b01010101, dtype=torch.uint8),
            n, m, scales(2), None, None)


def _i8w(x=None, wq=None, w_scale=None, bias=None, M=2, K=8, N=3):
    return (_x(M, K) if x is None else x, int8(N, K) if wq is None else wq,
            scales(N) if w_scale is None else w_scale, bias)


def _dw(x=None, dw_w=None, dw_b=None, pw_w=None, pw_b=None, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
        dw_act="relu6", pw_act="none", C=4, Cout=6, dtype=torch.float32):
    return (
        _x(2, C, 5, 5, dtype=dtype) if x is None else x,
        _x(C, 1, 3, 3, dtype=dtype) if dw_w is None else dw_w,
        dw_b,
        _x(Cout, C, 1, 1, dtype=dtype) if pw_w is None else pw_w,
        pw_b,
        list(stride), list(padding), list(dilation), dw_act, pw_act,
    )


PATTERN = r"the N:M pattern needs 1 <= n < m <= 16, got n={}, m={}"

CASES = [
    # ---------------------------------------------------------------- nm_compress
    Case("compress-int-dtype", "nm_compress", lambda: (torch.ones(3, 8, dtype=torch.int32), 2, 4),
         r"nm_compress: w must be float32, float64, bfloat16 or float16, got"),
    Case("compress-3d", "nm_compress", lambda: (_x(2, 3, 8), 2, 4), r"nm_compress: w must be 2-D \[rows, K\]"),
    Case("compress-1d", "nm_compress", lambda: (_x(8), 2, 4), r"nm_compress: w must be 2-D \[rows, K\]"),
    Case("compress-k-not-multiple", "nm_compress", lambda: (_x(3, 10), 2, 4),
         r"nm_compress: w's last dim K=10 must be a multiple of m=4"),
    Case("compress-n-eq-m", "nm_compress", lambda: (_x(3, 8), 4, 4), PATTERN.format(4, 4)),
    Case("compress-n-gt-m", "nm_compress", lambda: (_x(3, 8), 5, 4), PATTERN.format(5, 4)),
    Case("compress-m-gt-16", "nm_compress", lambda: (_x(3, 34), 2, 17), PATTERN.format(2, 17)),
    Case("compress-n-0", "nm_compress", lambda: (_x(3, 8), 0, 4), PATTERN.format(0, 4)),
    Case("compress-m-1", "nm_compress", lambda: (_x(3, 8), 0, 1), PATTERN.format(0, 1)),
    Case("compress-breaks-pattern", "nm_compress", lambda: (_breaks_pattern(), 2, 4),
         r"w is not 2:4 sparse: row 3, group 1 \(columns 4..7\) has 3 nonzeros, at most 2 allowed", fake=False),
    # ---------------------------------------------------------------- nm_decompress
    Case("decompress-values-int", "nm_decompress",
         lambda: (torch.ones(3, 4, dtype=torch.int32), _nm()[1], 2, 4), r"nm_decompress: values must be float32"),
    Case("decompress-values-1d", "nm_decompress", lambda: (_x(4), _nm()[1], 2, 4),
         r"nm_decompress: values must be 2-D \[rows, K\*n/m\]"),
    Case("decompress-meta-int8", "nm_decompress", lambda: (_nm()[0], _nm()[1].to(torch.int8), 2, 4),
         r"nm_decompress: meta must be a 2-D uint8 tensor"),
    Case("decompress-meta-1d", "nm_decompress", lambda: (_nm()[0], _nm()[1][0], 2, 4),
         r"nm_decompress: meta must be a 2-D uint8 tensor"),
    Case("decompress-meta-wide", "nm_decompress",
         lambda: (_nm()[0], torch.zeros(3, 2, dtype=torch.uint8), 2, 4), r"nm_decompress: meta must have shape \[3, 1\]"),
    Case("decompress-meta-rows", "nm_decompress", lambda: (_nm()[0], _nm()[1][:2], 2, 4),
         r"nm_decompress: meta must have shape \[3, 1\]"),
    Case("decompress-values-not-multiple-of-n", "nm_decompress",
         lambda: (_x(3, 5), torch.zeros(3, 2, dtype=torch.uint8), 2, 4),
         r"nm_decompress: values' last dim 5 must be a multiple of n=2"),
    Case("decompress-pattern", "nm_decompress", lambda: (*_nm(), 2, 1), PATTERN.format(2, 1)),
    Case("decompress-m-gt-16", "nm_decompress", lambda: (*_nm(), 2, 32), PATTERN.format(2, 32)),
    Case("decompress-meta-three-bits", "nm_decompress", lambda: (*_corrupt_three_bits(), 2, 4),
         r"nm_decompress: meta row 1 is not a valid 2:4 mask", fake=False),
    Case("decompress-meta-one-bit", "nm_decompress", lambda: (*_corrupt_one_bit(), 2, 4),
         r"nm_decompress: meta row 2 is not a valid 2:4 mask", fake=False),
    Case("decompress-meta-past-k", "nm_decompress", lambda: (*_corrupt_past_k(), 2, 4),
         r"nm_decompress: meta row 0 is not a valid 2:4 mask .*none past K=12", fake=False),
    # ---------------------------------------------------------------- nm_linear
    Case("linear-x-dtype", "nm_linear", lambda: _lin(_x(2, 8, dtype=torch.float64)),
         r"nm_linear: x dtype .* must match values dtype"),
    Case("linear-x-k", "nm_linear", lambda: _lin(_x(2, 7)),
         r"nm_linear: x must have shape \[\*, 8\] to match the weight \(K=8\)"),
    Case("linear-x-scalar", "nm_linear", lambda: _lin(torch.tensor(1.0)), r"nm_linear: x must have shape \[\*, 8\]"),
    Case("linear-bias-size", "nm_linear", lambda: _lin(_x(2, 8), bias=_x(4)), r"nm_linear: bias must have shape \[3\]"),
    Case("linear-bias-2d", "nm_linear", lambda: _lin(_x(2, 8), bias=_x(1, 3)), r"nm_linear: bias must have shape \[3\]"),
    Case("linear-bias-dtype", "nm_linear", lambda: _lin(_x(2, 8), bias=_x(3, dtype=torch.float16)),
         r"nm_linear: bias dtype .* must match values dtype"),
    Case("linear-meta-dtype", "nm_linear", lambda: (_x(2, 8), _nm()[0], _nm()[1].int(), 2, 4, None),
         r"nm_linear: meta must be a 2-D uint8 tensor"),
    Case("linear-meta-shape", "nm_linear", lambda: (_x(2, 8), _nm()[0], torch.zeros(3, 3, dtype=torch.uint8), 2, 4, None),
         r"nm_linear: meta must have shape \[3, 1\]"),
    Case("linear-values-dtype", "nm_linear",
         lambda: (torch.ones(2, 8, dtype=torch.int64), torch.ones(3, 4, dtype=torch.int64), _nm()[1], 2, 4, None),
         r"nm_linear: values must be float32, float64, bfloat16 or float16"),
    Case("linear-pattern-n0", "nm_linear", lambda: (_x(2, 8), *_nm(), 0, 4, None), PATTERN.format(0, 4)),
    Case("linear-pattern-m17", "nm_linear", lambda: (_x(2, 8), *_nm(), 2, 17, None), PATTERN.format(2, 17)),
    Case("linear-meta-three-bits-gather", "nm_linear", lambda: (_x(2, 8), *_corrupt_three_bits(), 2, 4, None),
         r"nm_linear: meta is not a valid 2:4 mask", fake=False),
    Case("linear-meta-three-bits-packed", "nm_linear", lambda: (_x(20, 8), *_corrupt_three_bits(), 2, 4, None),
         r"nm_linear: meta is not a valid 2:4 mask", fake=False),
    Case("linear-meta-past-k", "nm_linear", lambda: (_x(3, 12), *_corrupt_past_k(), 2, 4, None),
         r"nm_linear: meta is not a valid 2:4 mask", fake=False),
    # ---------------------------------------------------------------- quantize_rows
    Case("quantize-scalar", "quantize_rows", lambda: (torch.tensor(1.0),), r"quantize_rows: x must have at least 1 dim"),
    Case("quantize-int", "quantize_rows", lambda: (torch.ones(2, 3, dtype=torch.int32),),
         r"quantize_rows: x must be float32, bfloat16 or float16"),
    Case("quantize-f64", "quantize_rows", lambda: (_x(2, 3, dtype=torch.float64),),
         r"quantize_rows: x must be float32, bfloat16 or float16"),
    Case("quantize-nan", "quantize_rows", lambda: (torch.tensor([[1.0, 2.0], [3.0, float("nan")]]),),
         r"quantize_rows: x holds NaN or Inf \(row 1", fake=False),
    Case("quantize-inf", "quantize_rows", lambda: (torch.tensor([[float("inf"), 2.0], [3.0, 4.0]]),),
         r"quantize_rows: x holds NaN or Inf \(row 0", fake=False),
    Case("quantize-neg-inf-bf16", "quantize_rows",
         lambda: (torch.tensor([[1.0], [2.0], [-float("inf")]], dtype=torch.bfloat16),),
         r"quantize_rows: x holds NaN or Inf \(row 2", fake=False),
    Case("quantize-nan-f16-batched", "quantize_rows",
         lambda: (torch.tensor([[[1.0, 2.0]], [[float("nan"), 1.0]]], dtype=torch.float16),),
         r"quantize_rows: x holds NaN or Inf \(row 1", fake=False),
    # ---------------------------------------------------------------- int8_linear
    Case("int8-q-float", "int8_linear", lambda: _i8(q=_x(2, 8)), r"int8_linear: q must be an int8 tensor \[\*, K\]"),
    Case("int8-q-scalar", "int8_linear", lambda: _i8(q=torch.tensor(1, dtype=torch.int8), q_scale=scales()),
         r"int8_linear: q must be an int8 tensor"),
    Case("int8-wq-1d", "int8_linear", lambda: _i8(wq=int8(8)), r"int8_linear: wq must be a 2-D int8 tensor \[N, K\]"),
    Case("int8-wq-uint8", "int8_linear", lambda: _i8(wq=torch.ones(3, 8, dtype=torch.uint8)),
         r"int8_linear: wq must be a 2-D int8 tensor"),
    Case("int8-k-mismatch", "int8_linear", lambda: _i8(wq=int8(3, 9)), r"int8_linear: wq must have K=8 columns to match q"),
    Case("int8-k-too-large", "int8_linear", lambda: _i8(M=1, K=131072, N=2),
         r"int8_linear: K=131072 exceeds 131071.*int32 accumulator could overflow"),
    Case("int8-q-scale-shape", "int8_linear", lambda: _i8(q_scale=scales(2, 1)),
         r"int8_linear: q_scale must be float32 with shape \[2\]"),
    Case("int8-q-scale-batched-shape", "int8_linear", lambda: _i8(q=int8(2, 3, 8), q_scale=scales(6)),
         r"int8_linear: q_scale must be float32 with shape \[2, 3\]"),
    Case("int8-q-scale-dtype", "int8_linear", lambda: _i8(q_scale=scales(2).half()),
         r"int8_linear: q_scale must be float32"),
    Case("int8-w-scale-shape", "int8_linear", lambda: _i8(w_scale=scales(4)), r"int8_linear: w_scale must be float32 with shape \[3\]"),
    Case("int8-w-scale-dtype", "int8_linear", lambda: _i8(w_scale=scales(3).double()), r"int8_linear: w_scale must be float32"),
    Case("int8-bias-size", "int8_linear", lambda: _i8(bias=_x(2)), r"int8_linear: bias must have shape \[3\]"),
    Case("int8-bias-dtype", "int8_linear", lambda: _i8(bias=_x(3, dtype=torch.float64)),
         r"int8_linear: bias must be float32, bfloat16 or float16"),
    Case("int8-out-int32", "int8_linear", lambda: _i8(out_dtype=torch.int32),
         r"int8_linear: out_dtype must be float32, bfloat16 or float16"),
    Case("int8-out-f64", "int8_linear", lambda: _i8(out_dtype=torch.float64),
         r"int8_linear: out_dtype must be float32, bfloat16 or float16"),
    # ---------------------------------------------------------------- int8_pack_weight, int8_linear_packed
    Case("i8pack-wq-float", "int8_pack_weight", lambda: (_x(3, 8),), r"int8_pack_weight: wq must be a 2-D int8 tensor \[N, K\]"),
    Case("i8pack-wq-1d", "int8_pack_weight", lambda: (int8(8),), r"int8_pack_weight: wq must be a 2-D int8 tensor"),
    Case("i8pack-k-too-large", "int8_pack_weight", lambda: (int8(1, 131072),),
         r"int8_pack_weight: K=131072 exceeds 131071.*int32 accumulator could overflow"),
    Case("i8p-q-float", "int8_linear_packed", lambda: _i8p(q=_x(2, 8)),
         r"int8_linear_packed: q must be an int8 tensor \[\*, K\]"),
    Case("i8p-packed-unpacked", "int8_linear_packed", lambda: _i8p(packed=int8(3, 8)),
         r"int8_linear_packed: packed must be the int8 tensor of shape \[1, 192\] that int8_pack_weight makes of "
         r"a \[3, 8\] weight \(N from w_scale, K from q\), got .* \[3, 8\]"),
    Case("i8p-packed-other-k", "int8_linear_packed", lambda: _i8p(packed=reference.int8_pack_weight(int8(3, 12))),
         r"int8_linear_packed: packed must be the int8 tensor of shape \[1, 192\]"),
    Case("i8p-packed-other-n", "int8_linear_packed", lambda: _i8p(w_scale=scales(17)),
         r"int8_linear_packed: packed must be the int8 tensor of shape \[2, 192\] .* a \[17, 8\] weight"),
    Case("i8p-packed-uint8", "int8_linear_packed",
         lambda: _i8p(packed=reference.int8_pack_weight(int8(3, 8)).view(torch.uint8)),
         r"int8_linear_packed: packed must be the int8 tensor"),
    Case("i8p-w-scale-2d", "int8_linear_packed", lambda: _i8p(w_scale=scales(3, 1)),
         r"int8_linear_packed: w_scale must be float32 with shape \[N\]"),
    Case("i8p-w-scale-dtype", "int8_linear_packed", lambda: _i8p(w_scale=scales(3).double()),
         r"int8_linear_packed: w_scale must be float32 with shape \[3\]"),
    Case("i8p-k-too-large", "int8_linear_packed",
         lambda: _i8p(M=1, K=131072, N=2, packed=torch.zeros(1, 32768 * 64 + 64, dtype=torch.int8)),
         r"int8_linear_packed: K=131072 exceeds 131071.*int32 accumulator could overflow"),
    Case("i8p-q-scale-shape", "int8_linear_packed", lambda: _i8p(q_scale=scales(2, 1)),
         r"int8_linear_packed: q_scale must be float32 with shape \[2\]"),
    Case("i8p-bias-size", "int8_linear_packed", lambda: _i8p(bias=_x(2)), r"int8_linear_packed: bias must have shape \[3\]"),
    Case("i8p-out-int32", "int8_linear_packed", lambda: _i8p(out_dtype=torch.int32),
         r"int8_linear_packed: out_dtype must be float32, bfloat16 or float16"),
    # ---------------------------------------------------------------- nm_pack_weight, nm_linear_packed
    Case("nmpack-pattern", "nm_pack_weight", lambda: (*_nm(3, 8, 1, 4), 1, 4),
         r"nm_pack_weight: the packed layout is for 2:4 weights, got 1:4"),
    Case("nmpack-bad-pattern", "nm_pack_weight", lambda: (*_nm(3, 8), 4, 4), PATTERN.format(4, 4)),
    Case("nmpack-values-int", "nm_pack_weight", lambda: (torch.ones(3, 4, dtype=torch.int32), _nm()[1], 2, 4),
         r"nm_pack_weight: values must be float32, float64, bfloat16 or float16"),
    Case("nmpack-meta-shape", "nm_pack_weight", lambda: (_nm()[0], _nm(3, 16)[1], 2, 4),
         r"nm_pack_weight: meta must have shape \[3, 1\]"),
    Case("nmpack-corrupt", "nm_pack_weight", lambda: (*_corrupt_three_bits(), 2, 4),
         r"nm_pack_weight: meta row \d+ is not a valid 2:4 mask", fake=False),
    Case("nmp-x-int", "nm_linear_packed", lambda: _nmp(x=torch.ones(2, 8, dtype=torch.int32)),
         r"nm_linear_packed: x must be a float32, float64, bfloat16 or float16 tensor \[\*, K\]"),
    Case("nmp-k-odd", "nm_linear_packed", lambda: _nmp(x=_x(2, 10)), r"nm_linear_packed: x's last dim K=10 must be a multiple of 4"),
    Case("nmp-n-negative", "nm_linear_packed", lambda: _nmp(N=-1, packed=torch.zeros(0, 80)),
         r"nm_linear_packed: N must be >= 0, got -1"),
    Case("nmp-packed-other-k", "nm_linear_packed", lambda: _nmp(x=_x(2, 12)),
         r"nm_linear_packed: packed must be the .* tensor of shape \[1, 112\] that nm_pack_weight makes of a "
         r"\[3, 12\] 2:4 weight \(K from x\), got .* of shape \[1, 80\]"),
    Case("nmp-packed-other-n", "nm_linear_packed", lambda: _nmp(N=17),
         r"nm_linear_packed: packed must be the .* tensor of shape \[2, 80\]"),
    Case("nmp-packed-dtype", "nm_linear_packed", lambda: _nmp(x=_x(2, 8, dtype=torch.float16)),
         r"nm_linear_packed: packed must be the .* tensor of shape \[1, 96\]"),
    Case("nmp-bias-size", "nm_linear_packed", lambda: _nmp(bias=_x(2)), r"nm_linear_packed: bias must have shape \[3\]"),
    Case("nmp-bias-dtype", "nm_linear_packed", lambda: _nmp(bias=_x(3, dtype=torch.float64)),
         r"nm_linear_packed: bias dtype .* must match x dtype"),
    # ---------------------------------------------------------------- nm_int8_linear
    Case("ni8-q-float", "nm_int8_linear", lambda: _ni8(q=_x(2, 8)), r"nm_int8_linear: q must be an int8 tensor \[\*, K\]"),
    Case("ni8-q-scalar", "nm_int8_linear", lambda: _ni8(q=torch.tensor(1, dtype=torch.int8), q_scale=scales()),
         r"nm_int8_linear: q must be an int8 tensor"),
    Case("ni8-values-float", "nm_int8_linear", lambda: _ni8(values_q=_x(3, 4)),
         r"nm_int8_linear: values_q must be a 2-D int8 tensor \[N, K\*n/m\]"),
    Case("ni8-values-1d", "nm_int8_linear", lambda: _ni8(values_q=int8(4)),
         r"nm_int8_linear: values_q must be a 2-D int8 tensor"),
    Case("ni8-meta-int8", "nm_int8_linear", lambda: _ni8(meta=torch.zeros(3, 1, dtype=torch.int8)),
         r"nm_int8_linear: meta must be a 2-D uint8 tensor"),
    Case("ni8-meta-shape", "nm_int8_linear", lambda: _ni8(meta=torch.zeros(3, 2, dtype=torch.uint8)),
         r"nm_int8_linear: meta must have shape \[3, 1\] for values_q of shape \[3, 4\] \(K=8\)"),
    Case("ni8-meta-rows", "nm_int8_linear", lambda: _ni8(meta=torch.zeros(2, 1, dtype=torch.uint8)),
         r"nm_int8_linear: meta must have shape \[3, 1\]"),
    Case("ni8-values-not-multiple-of-n", "nm_int8_linear",
         lambda: _ni8(values_q=int8(3, 5), meta=torch.zeros(3, 2, dtype=torch.uint8)),
         r"nm_int8_linear: values_q' last dim 5 must be a multiple of n=2"),
    Case("ni8-k-mismatch", "nm_int8_linear", lambda: _ni8(q=int8(2, 12)),
         r"nm_int8_linear: q must have shape \[\*, 8\] to match the weight \(K=8\)"),
    Case("ni8-pattern", "nm_int8_linear", lambda: _ni8()[:4] + (4, 4) + _ni8()[6:], PATTERN.format(4, 4)),
    Case("ni8-k-too-large", "nm_int8_linear", _ni8_past_bound,
         r"nm_int8_linear: K\*n/m=131072 kept products \(K=262144, 1:2\) exceed 131071.*int32 accumulator could overflow"),
    Case("ni8-q-scale-shape", "nm_int8_linear", lambda: _ni8(q_scale=scales(2, 1)),
         r"nm_int8_linear: q_scale must be float32 with shape \[2\]"),
    Case("ni8-q-scale-dtype", "nm_int8_linear", lambda: _ni8(q_scale=scales(2).double()),
         r"nm_int8_linear: q_scale must be float32"),
    Case("ni8-w-scale-shape", "nm_int8_linear", lambda: _ni8(w_scale=scales(4)),
         r"nm_int8_linear: w_scale must be float32 with shape \[3\]"),
    Case("ni8-w-scale-dtype", "nm_int8_linear", lambda: _ni8(w_scale=scales(3).half()),
         r"nm_int8_linear: w_scale must be float32"),
    Case("ni8-bias-size", "nm_int8_linear", lambda: _ni8(bias=_x(2)), r"nm_int8_linear: bias must have shape \[3\]"),
    Case("ni8-bias-dtype", "nm_int8_linear", lambda: _ni8(bias=_x(3, dtype=torch.float64)),
         r"nm_int8_linear: bias must be float32, bfloat16 or float16"),
    Case("ni8-out-int32", "nm_int8_linear", lambda: _ni8(out_dtype=torch.int32),
         r"nm_int8_linear: out_dtype must be float32, bfloat16 or float16"),
    Case("ni8-meta-three-bits-gather", "nm_int8_linear", lambda: _ni8(M=2, corrupt=1),
         r"nm_int8_linear: meta is not a valid 2:4 mask", fake=False),
    Case("ni8-meta-three-bits-packed", "nm_int8_linear", lambda: _ni8(M=20, corrupt=2),
         r"nm_int8_linear: meta is not a valid 2:4 mask", fake=False),
    # ---------------------------------------------------------------- int8_weight_linear
    Case("i8w-x-f64", "int8_weight_linear", lambda: _i8w(x=_x(2, 8, dtype=torch.float64)),
         r"int8_weight_linear: x must be a float32, bfloat16 or float16 tensor"),
    Case("i8w-x-int8", "int8_weight_linear", lambda: _i8w(x=int8(2, 8)),
         r"int8_weight_linear: x must be a float32, bfloat16 or float16 tensor"),
    Case("i8w-wq-float", "int8_weight_linear", lambda: _i8w(wq=_x(3, 8)), r"int8_weight_linear: wq must be a 2-D int8 tensor"),
    Case("i8w-k-mismatch", "int8_weight_linear", lambda: _i8w(wq=int8(3, 16)),
         r"int8_weight_linear: wq must have K=8 columns to match x"),
    Case("i8w-w-scale-shape", "int8_weight_linear", lambda: _i8w(w_scale=scales(1, 3)),
         r"int8_weight_linear: w_scale must be float32 with shape \[3\]"),
    Case("i8w-bias-dtype", "int8_weight_linear", lambda: _i8w(bias=_x(3).half()),
         r"int8_weight_linear: bias dtype .* must match x dtype"),
    Case("i8w-bias-size", "int8_weight_linear", lambda: _i8w(bias=_x(5)), r"int8_weight_linear: bias must have shape \[3\]"),
    # ---------------------------------------------------------------- dwsep_conv2d
    Case("dwsep-x-3d", "dwsep_conv2d", lambda: _dw(x=_x(4, 5, 5)), r"dwsep_conv2d: x must be 4-D \[B, C, H, W\]"),
    Case("dwsep-x-int", "dwsep_conv2d",
         lambda: _dw(x=torch.ones(2, 4, 5, 5, dtype=torch.int32)), r"dwsep_conv2d: x must be float32, float64"),
    Case("dwsep-dw-weight-in-channels", "dwsep_conv2d", lambda: _dw(dw_w=_x(4, 2, 3, 3)),
         r"dwsep_conv2d: dw_weight must have shape \[4, 1, kh, kw\]"),
    Case("dwsep-dw-weight-channels", "dwsep_conv2d", lambda: _dw(dw_w=_x(5, 1, 3, 3)),
         r"dwsep_conv2d: dw_weight must have shape \[4, 1, kh, kw\]"),
    Case("dwsep-dw-weight-3d", "dwsep_conv2d", lambda: _dw(dw_w=_x(4, 3, 3)),
         r"dwsep_conv2d: dw_weight must have shape \[4, 1, kh, kw\]"),
    Case("dwsep-pw-weight-kernel", "dwsep_conv2d", lambda: _dw(pw_w=_x(6, 4, 3, 3)),
         r"dwsep_conv2d: pw_weight must have shape \[Cout, 4, 1, 1\]"),
    Case("dwsep-pw-weight-channels", "dwsep_conv2d", lambda: _dw(pw_w=_x(6, 5, 1, 1)),
         r"dwsep_conv2d: pw_weight must have shape \[Cout, 4, 1, 1\]"),
    Case("dwsep-pw-weight-2d", "dwsep_conv2d", lambda: _dw(pw_w=_x(6, 4)),
         r"dwsep_conv2d: pw_weight must have shape \[Cout, 4, 1, 1\]"),
    Case("dwsep-dw-weight-dtype", "dwsep_conv2d", lambda: _dw(dw_w=_x(4, 1, 3, 3, dtype=torch.float64)),
         r"dwsep_conv2d: dw_weight dtype .* must match x dtype"),
    Case("dwsep-pw-weight-dtype", "dwsep_conv2d", lambda: _dw(pw_w=_x(6, 4, 1, 1, dtype=torch.bfloat16)),
         r"dwsep_conv2d: pw_weight dtype .* must match x dtype"),
    Case("dwsep-dw-bias-size", "dwsep_conv2d", lambda: _dw(dw_b=_x(6)), r"dwsep_conv2d: dw_bias must have shape \[4\]"),
    Case("dwsep-pw-bias-size", "dwsep_conv2d", lambda: _dw(pw_b=_x(4)), r"dwsep_conv2d: pw_bias must have shape \[6\]"),
    Case("dwsep-dw-bias-dtype", "dwsep_conv2d", lambda: _dw(dw_b=_x(4, dtype=torch.float16)),
         r"dwsep_conv2d: dw_bias dtype .* must match x dtype"),
    Case("dwsep-pw-bias-dtype", "dwsep_conv2d", lambda: _dw(pw_b=_x(6, dtype=torch.float64)),
         r"dwsep_conv2d: pw_bias dtype .* must match x dtype"),
    Case("dwsep-dw-activation", "dwsep_conv2d", lambda: _dw(dw_act="gelu"),
         r"dwsep_conv2d: dw_activation must be one of 'none', 'relu', 'relu6', got 'gelu'"),
    Case("dwsep-pw-activation", "dwsep_conv2d", lambda: _dw(pw_act="ReLU"),
         r"dwsep_conv2d: pw_activation must be one of 'none', 'relu', 'relu6', got 'ReLU'"),
    Case("dwsep-empty-kernel-too-big", "dwsep_conv2d", lambda: _dw(dw_w=_x(4, 1, 7, 7), padding=(0, 0)),
         r"dwsep_conv2d: the output would be empty: input 5x5, kernel 7x7"),
    Case("dwsep-empty-dilation", "dwsep_conv2d", lambda: _dw(padding=(0, 0), dilation=(3, 1)),
         r"dwsep_conv2d: the output would be empty: input 5x5, kernel 3x3"),
    Case("dwsep-empty-kernel-0", "dwsep_conv2d", lambda: _dw(dw_w=_x(4, 1, 0, 3)),
         r"dwsep_conv2d: the output would be empty"),
    Case("dwsep-stride-0", "dwsep_conv2d", lambda: _dw(stride=(0, 1)), r"dwsep_conv2d: stride must be two positive ints"),
    Case("dwsep-stride-negative", "dwsep_conv2d", lambda: _dw(stride=(1, -2)),
         r"dwsep_conv2d: stride must be two positive ints"),
    Case("dwsep-stride-3", "dwsep_conv2d", lambda: _dw(stride=(1, 1, 1)), r"dwsep_conv2d: stride must be two positive ints"),
    Case("dwsep-padding-negative", "dwsep_conv2d", lambda: _dw(padding=(-1, 0)),
         r"dwsep_conv2d: padding must be two non-negative ints"),
    Case("dwsep-dilation-0", "dwsep_conv2d", lambda: _dw(dilation=(1, 0)), r"dwsep_conv2d: dilation must be two positive ints"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_native_error(case):
    args = case.args()
    with pytest.raises(RuntimeError, match=case.match):
        getattr(E, case.op)(*args)


@pytest.mark.parametrize("case", [c for c in CASES if c.fake], ids=[c.id for c in CASES if c.fake])
def test_fake_error(case):
    args = case.args()
    with FakeTensorMode() as mode:
        fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
        with pytest.raises(RuntimeError, match=case.match):
            getattr(E, case.op)(*fake_args)


def test_every_op_has_error_cases():
    ops = {c.op for c in CASES}
    assert ops == {"nm_compress", "nm_decompress", "nm_linear", "nm_pack_weight", "nm_linear_packed", "quantize_rows",
                   "int8_linear", "int8_pack_weight", "int8_linear_packed", "nm_int8_linear", "int8_weight_linear",
                   "dwsep_conv2d"}


@pytest.mark.parametrize(("bad", "first"), [
    ([(3000, 1), (2049, 3), (2049, 2)], (2049, 2)),  # all in the second half of the rows
    ([(3000, 0), (5, 3), (2500, 1)], (5, 3)),  # one in each half
])
def test_compress_error_names_first_bad_row_and_group(bad, first):
    """The first offending (row, group) in row-major order, whatever the thread split
    (4096 rows of K = 16: the CPU kernel splits them in chunks of 2048)."""
    w = nm_weight(4096, 16, 2, 4)
    for r, g in bad:
        w[r, 4 * g: 4 * g + 4] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    r, g = first
    with pytest.raises(RuntimeError, match=rf"row {r}, group {g} \(columns {4 * g}..{4 * g + 3}\) has 3 nonzeros"):
        E.nm_compress(w, 2, 4)


def test_compress_error_counts_nan_as_nonzero():
    w = torch.zeros(4, 8)
    w[2, 4:7] = torch.tensor([1.0, float("nan"), 2.0])
    with pytest.raises(RuntimeError, match=r"row 2, group 1 \(columns 4..7\) has 3 nonzeros"):
        E.nm_compress(w, 2, 4)


@pytest.mark.cuda
def test_device_mismatch():
    values, meta = _nm()
    x = _x(2, 8).cuda()
    with pytest.raises(RuntimeError, match=r"nm_linear: .* must be on"):
        E.nm_linear(x, values.cuda(), meta, 2, 4, None)
    with pytest.raises(RuntimeError, match=r"nm_linear: bias must be on"):
        E.nm_linear(x, values.cuda(), meta.cuda(), 2, 4, _x(3))
    q, q_scale, wq, w_scale, _, _ = _i8()
    with pytest.raises(RuntimeError, match=r"int8_linear: w_scale must be on"):
        E.int8_linear(q.cuda(), q_scale.cuda(), wq.cuda(), w_scale, None, None)
    args = list(_ni8())
    args[0], args[1], args[6] = args[0].cuda(), args[1].cuda(), args[6].cuda()
    with pytest.raises(RuntimeError, match=r"nm_int8_linear: values_q must be on"):
        E.nm_int8_linear(*args)
    args = list(_dw())
    args[0] = args[0].cuda()
    with pytest.raises(RuntimeError, match=r"dwsep_conv2d: .* must be on"):
        E.dwsep_conv2d(*args)
