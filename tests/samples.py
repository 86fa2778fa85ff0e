"""One ``sample_inputs(op_name, device, dtype)`` per effdl operator.

Each sample is the full positional argument tuple of ``torch.ops.effdl.<op>``
(optional arguments spelled out, ``None`` where absent), so the same tuple feeds
the native op, the reference in :mod:`effdl.reference`, the gradient tests and
``torch.library.opcheck``. Every call draws fresh random data (never all
zeros) from torch's global generator, which the conftest seeds per test.

Inputs are built with pure PyTorch (the N:M packing uses ``effdl.reference``), so
a broken kernel cannot hide behind its own sample data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from effdl import formats, reference
from effdl.backends import OPS

_ALL_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_ACT_FLOATS = (torch.float32, torch.bfloat16, torch.float16)

# the dtypes each op supports; for (nm_)int8_linear the dtype is the output (and bias) dtype
DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "nm_compress": _ALL_FLOATS,
    "nm_decompress": _ALL_FLOATS,
    "nm_linear": _ALL_FLOATS,
    "nm_pack_weight": _ALL_FLOATS,
    "nm_linear_packed": _ALL_FLOATS,
    "quantize_rows": _ACT_FLOATS,
    "int8_linear": _ACT_FLOATS,
    "int8_pack_weight": (torch.float32,),  # int8 in and out: the dtype is nominal
    "int8_linear_packed": _ACT_FLOATS,
    "nm_int8_linear": _ACT_FLOATS,
    "int8_weight_linear": _ACT_FLOATS,
    "dwsep_conv2d": _ALL_FLOATS,
}

# positions of the differentiable arguments of the differentiable ops
DIFF_ARGNUMS: dict[str, tuple[int, ...]] = {
    "nm_linear": (0, 1, 5),  # x, values, bias
    "dwsep_conv2d": (0, 1, 2, 3, 4),  # x, dw_weight, dw_bias, pw_weight, pw_bias
}

# (n, m, rows, K): every pattern the brief lists, odd m, and K that leave a partial meta byte
NM_CASES = (
    (2, 4, 5, 24),
    (2, 4, 3, 20),  # K % 8 != 0: the last meta byte is half used
    (1, 4, 3, 12),  # K % 8 != 0
    (4, 8, 6, 40),
    (2, 8, 7, 40),
    (5, 16, 4, 48),
    (3, 7, 3, 21),  # odd m, K % 8 != 0
)


# ---------------------------------------------------------------- helpers


def rand(*shape: int, dtype=torch.float32, device="cpu", scale: float = 1.0) -> torch.Tensor:
    """Normal random data, never zero."""
    t = torch.randn(*shape, dtype=torch.float64, device=device) * scale
    t = torch.where(t == 0, torch.ones_like(t), t)
    return t.to(dtype)


def strided(t: torch.Tensor, how: str) -> torch.Tensor:
    """A non-contiguous tensor with ``t``'s values: ``"t"`` a transposed view of the
    last two dims, ``"slice"`` every other element of a wider last dim."""
    if how == "t":
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if how == "slice":
        # the skipped elements are NaN (floats) so a kernel that reads them shows it
        fill = float("nan") if t.is_floating_point() else 99
        wide = torch.stack([t, torch.full_like(t, fill)], dim=-1).flatten(-2)
        return wide[..., ::2]
    raise ValueError(how)


def nm_weight(rows: int, K: int, n: int, m: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """A dense ``[rows, K]`` weight that is ``n:m`` sparse. About a quarter of the
    groups hold fewer than ``n`` nonzeros (the format then keeps explicit zeros),
    and the first group of row 0 has exactly ``n``."""
    w = rand(rows, K, dtype=torch.float32, device=device)
    keep = formats.nm_mask(w, n, m)
    if rows and K:
        extra = (torch.rand(rows, K, device=device) < 0.25) & keep
        extra[0, :m] = False
        keep &= ~extra
    return torch.where(keep, w, torch.zeros_like(w)).to(dtype)


def nm_pack(w: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """values, meta of an N:M weight, built by the pure-PyTorch reference."""
    rows, K = w.shape
    if rows == 0:  # built by hand: the reference's mask packing cannot view 0 rows
        return w.new_empty(0, K // m * n), w.new_empty(0, formats.meta_bytes(K), dtype=torch.uint8)
    return reference.nm_compress(w, n, m)


def int8(*shape: int, device="cpu", low: int = -128) -> torch.Tensor:
    """Random int8 in [low, 127], not all zero."""
    t = torch.randint(low, 128, shape, dtype=torch.int8, device=device)
    if t.numel():
        t.view(-1)[0] = 127
    return t


def scales(*shape: int, device="cpu") -> torch.Tensor:
    return (torch.rand(shape, device=device) * 0.05 + 1e-3).float()


def nm_int8_weight(rows: int, K: int, n: int, m: int, device="cpu") -> torch.Tensor:
    """A dense int8 ``[rows, K]`` weight that is ``n:m`` sparse: the zeros of
    :func:`nm_weight` (short groups included), random int8 in [-128, 127] elsewhere."""
    pattern = nm_weight(rows, K, n, m, device=device) != 0
    return torch.where(pattern, int8(rows, K, device=device), torch.zeros(rows, K, dtype=torch.int8, device=device))


def nm_int8_pack(wq: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """values_q (int8), meta of an N:M int8 weight, built by the pure-PyTorch reference."""
    values, meta = nm_pack(wq.float(), n, m)  # int8 -> fp32 -> int8 is exact
    return values.to(torch.int8), meta


# ---------------------------------------------------------------- per-op generators


def _nm_compress(device, dtype) -> Iterator[tuple]:
    for n, m, rows, K in NM_CASES:
        yield (nm_weight(rows, K, n, m, dtype, device), n, m)
    yield (nm_weight(0, 8, 2, 4, dtype, device), 2, 4)  # no rows
    yield (strided(nm_weight(6, 16, 2, 4, dtype, device), "t"), 2, 4)  # non-contiguous w
    w = nm_weight(4, 16, 2, 4, dtype, device)
    w[1, 4:8] = 0  # an all-zero group keeps n explicit zeros
    yield (w, 2, 4)


def _nm_decompress(device, dtype) -> Iterator[tuple]:
    for n, m, rows, K in NM_CASES:
        yield (*nm_pack(nm_weight(rows, K, n, m, dtype, device), n, m), n, m)
    yield (*nm_pack(nm_weight(0, 8, 2, 4, dtype, device), 2, 4), 2, 4)
    values, meta = nm_pack(nm_weight(5, 16, 2, 4, dtype, device), 2, 4)
    yield (strided(values, "t"), strided(meta, "t"), 2, 4)  # non-contiguous storage


def _nm_linear(device, dtype) -> Iterator[tuple]:
    def weight(n, m, N, K, bias):
        values, meta = nm_pack(nm_weight(N, K, n, m, dtype, device), n, m)
        return values, meta, n, m, (rand(N, dtype=dtype, device=device) if bias else None)

    def call(x, values, meta, n, m, bias):
        return (x, values, meta, n, m, bias)

    # 2:4, leading batch dims, bias
    yield call(rand(2, 3, 24, dtype=dtype, device=device), *weight(2, 4, 5, 24, True))
    # M = 1 (decode), no bias
    yield call(rand(1, 24, dtype=dtype, device=device), *weight(2, 4, 5, 24, False))
    # M > 16: the transposed-pack path, two strips of 16, bias; K % 8 != 0
    yield call(rand(20, 20, dtype=dtype, device=device), *weight(2, 4, 9, 20, True))
    # M = 0
    yield call(rand(0, 24, dtype=dtype, device=device), *weight(2, 4, 5, 24, True))
    # 1:4 with a partial meta byte, non-contiguous (transposed) x with M = 7 > 4
    yield call(strided(rand(7, 12, dtype=dtype, device=device), "t"), *weight(1, 4, 3, 12, False))
    # 4:8, sliced x (stride 2 along K), M = 3 (gather path)
    yield call(strided(rand(3, 40, dtype=dtype, device=device), "slice"), *weight(4, 8, 6, 40, True))
    # 2:8, batch dims in a non-contiguous order, M = 6 (packed path), non-contiguous values and meta
    x = rand(3, 2, 40, dtype=dtype, device=device).transpose(0, 1)
    values, meta, n, m, bias = weight(2, 8, 7, 40, True)
    yield call(x, strided(values, "t"), strided(meta, "t"), n, m, bias)
    # m = 16, 1-D x
    yield call(rand(48, dtype=dtype, device=device), *weight(5, 16, 4, 48, True))
    # odd m, M = 17
    yield call(rand(17, 21, dtype=dtype, device=device), *weight(3, 7, 3, 21, False))
    # large enough that the CPU kernel splits N across threads, M = 35 (three strips)
    yield call(rand(35, 96, dtype=dtype, device=device), *weight(2, 4, 37, 96, True))


def _nm_pack_weight(device, dtype) -> Iterator[tuple]:
    yield (*nm_pack(nm_weight(5, 24, 2, 4, dtype, device), 2, 4), 2, 4)  # one partial panel
    # N % 16 != 0, K % 8 != 0 (a half-used meta byte), K / 4 % 8 != 0 (a partial nibble word)
    yield (*nm_pack(nm_weight(37, 20, 2, 4, dtype, device), 2, 4), 2, 4)
    yield (*nm_pack(nm_weight(0, 8, 2, 4, dtype, device), 2, 4), 2, 4)  # no rows: no panels
    yield (*nm_pack(nm_weight(3, 0, 2, 4, dtype, device), 2, 4), 2, 4)  # K = 0
    values, meta = nm_pack(nm_weight(16, 64, 2, 4, dtype, device), 2, 4)
    yield (strided(values, "t"), strided(meta, "t"), 2, 4)  # one full panel, non-contiguous


def _nm_linear_packed(device, dtype) -> Iterator[tuple]:
    def packed(N, K):
        return reference.nm_pack_weight(*nm_pack(nm_weight(N, K, 2, 4, dtype, device), 2, 4), 2, 4)

    def bias(N):
        return rand(N, dtype=dtype, device=device)

    yield (rand(2, 3, 24, dtype=dtype, device=device), packed(5, 24), 5, bias(5))  # leading batch dims
    yield (rand(1, 20, dtype=dtype, device=device), packed(37, 20), 37, None)  # M = 1, partial meta
    yield (rand(0, 24, dtype=dtype, device=device), packed(5, 24), 5, bias(5))  # M = 0
    yield (rand(4, 0, dtype=dtype, device=device), packed(3, 0), 3, bias(3))  # K = 0: the bias
    yield (rand(4, 24, dtype=dtype, device=device), packed(0, 24), 0, None)  # N = 0
    # above the vector kernels' row blocks, non-contiguous x and packed
    yield (strided(rand(17, 64, dtype=dtype, device=device), "t"), strided(packed(40, 64), "t"), 40, bias(40))
    # several chunks of decoded groups (K = 4 * 64 * 2 + 32), panels split across threads
    yield (rand(13, 544, dtype=dtype, device=device), packed(70, 544), 70, bias(70))


def _quantize_rows(device, dtype) -> Iterator[tuple]:
    yield (rand(2, 3, 16, dtype=dtype, device=device),)  # leading batch dims
    yield (rand(1, 33, dtype=dtype, device=device, scale=100.0),)  # M = 1, odd K, large values
    yield (rand(0, 8, dtype=dtype, device=device),)  # M = 0
    x = rand(5, 7, dtype=dtype, device=device, scale=1e-3)
    x[2] = 0  # an all-zero row: scale is FLT_MIN, q is 0
    yield (x,)
    yield (strided(rand(6, 8, dtype=dtype, device=device), "t"),)  # non-contiguous
    yield (rand(10, dtype=dtype, device=device),)  # 1-D: scale is a scalar
    yield (rand(3000, 16, dtype=dtype, device=device),)  # rows split across threads


def _int8_linear(device, dtype) -> Iterator[tuple]:
    # dtype is the output dtype; float32 also covers out_dtype=None
    out = None if dtype == torch.float32 else dtype

    def bias(N, bias_dtype=dtype):
        return rand(N, dtype=bias_dtype, device=device)

    yield (int8(2, 3, 24, device=device), scales(2, 3, device=device), int8(5, 24, device=device),
           scales(5, device=device), bias(5), out)
    yield (int8(1, 19, device=device), scales(1, device=device), int8(7, 19, device=device),
           scales(7, device=device), None, out)
    yield (int8(0, 16, device=device), scales(0, device=device), int8(4, 16, device=device),
           scales(4, device=device), bias(4), out)
    yield (int8(20, 40, device=device), scales(20, device=device), int8(18, 40, device=device),
           scales(18, device=device), bias(18, torch.float32), dtype)  # M > 16, explicit out dtype
    yield (strided(int8(9, 12, device=device), "t"), strided(scales(1, 9, device=device), "slice")[0],
           strided(int8(6, 12, device=device), "t"), scales(6, device=device), None, out)  # non-contiguous
    yield (int8(33, device=device), scales(device=device), int8(3, 33, device=device),
           scales(3, device=device), bias(3, torch.bfloat16), out)  # 1-D q, bf16 bias
    yield (int8(33, 130, device=device), scales(33, device=device), int8(70, 130, device=device),
           scales(70, device=device), bias(70), out)  # N split across threads


def _int8_pack_weight(device, dtype) -> Iterator[tuple]:
    yield (int8(5, 24, device=device),)  # one partial panel
    yield (int8(33, 130, device=device),)  # N % 16 != 0, K % 4 != 0
    yield (int8(0, 16, device=device),)  # no rows: no panels
    yield (int8(16, 3, device=device),)  # one full panel, one partial group
    yield (strided(int8(18, 12, device=device), "t"),)  # non-contiguous
    yield (torch.full((3, 9), -128, dtype=torch.int8, device=device),)  # the extreme column sums


def _int8_linear_packed(device, dtype) -> Iterator[tuple]:
    # int8_linear's cases with the weight packed by the pure-PyTorch reference
    for q, q_scale, wq, w_scale, bias, out in _int8_linear(device, dtype):
        yield (q, q_scale, reference.int8_pack_weight(wq), w_scale, bias, out)
    out = None if dtype == torch.float32 else dtype
    # more than one group of 4 panels and row tiles of 4 with a remainder; non-contiguous packed
    packed = strided(reference.int8_pack_weight(int8(75, 261, device=device)), "t")
    yield (int8(7, 261, device=device), scales(7, device=device), packed, scales(75, device=device),
           rand(75, dtype=dtype, device=device), out)


def _nm_int8_linear(device, dtype) -> Iterator[tuple]:
    # dtype is the output dtype; float32 also covers out_dtype=None
    out = None if dtype == torch.float32 else dtype

    def call(q, n, m, N, bias_dtype=dtype, bias=True, out_dtype=out, layout=None):
        values_q, meta = nm_int8_pack(nm_int8_weight(N, q.shape[-1], n, m, device=device), n, m)
        if layout is not None:
            values_q, meta = strided(values_q, layout), strided(meta, layout)
        return (q, scales(*q.shape[:-1], device=device), values_q, meta, n, m, scales(N, device=device),
                rand(N, dtype=bias_dtype, device=device) if bias else None, out_dtype)

    # 2:4, leading batch dims (M = 6: the packed path), bias
    yield call(int8(2, 3, 24, device=device), 2, 4, 5)
    # M = 1 (decode, the gather path), no bias
    yield call(int8(1, 24, device=device), 2, 4, 7, bias=False)
    # M = 0
    yield call(int8(0, 16, device=device), 2, 4, 4)
    # K % 8 != 0 (a half-used meta byte), M = 20, fp32 bias, explicit out dtype
    yield call(int8(20, 20, device=device), 2, 4, 9, bias_dtype=torch.float32, out_dtype=dtype)
    # 1:4, non-contiguous q (transposed, M = 7), values_q and meta
    yield call(strided(int8(7, 12, device=device), "t"), 1, 4, 3, bias=False, layout="t")
    # 4:8, sliced q (stride 2 along K), M = 3 (gather)
    yield call(strided(int8(3, 40, device=device), "slice"), 4, 8, 6)
    # 5:16, 1-D q, bf16 bias
    yield call(int8(48, device=device), 5, 16, 4, bias_dtype=torch.bfloat16)
    # odd m, M = 17 (two strips of 16)
    yield call(int8(17, 21, device=device), 3, 7, 3, bias=False)
    # large enough that the CPU kernel splits N across threads; M = 35, three strips
    yield call(int8(35, 256, device=device), 2, 4, 70)


def _int8_weight_linear(device, dtype) -> Iterator[tuple]:
    yield (rand(2, 3, 24, dtype=dtype, device=device), int8(5, 24, device=device),
           scales(5, device=device), rand(5, dtype=dtype, device=device))
    yield (rand(1, 19, dtype=dtype, device=device), int8(7, 19, device=device), scales(7, device=device), None)
    yield (rand(0, 16, dtype=dtype, device=device), int8(4, 16, device=device), scales(4, device=device),
           rand(4, dtype=dtype, device=device))
    yield (strided(rand(20, 12, dtype=dtype, device=device), "t"), int8(18, 12, device=device),
           scales(18, device=device), rand(18, dtype=dtype, device=device))
    yield (rand(33, dtype=dtype, device=device), strided(int8(3, 33, device=device), "t"),
           scales(3, device=device), None)


def _dwsep_conv2d(device, dtype) -> Iterator[tuple]:
    def conv(x, k, cout, stride, padding, dilation, dw_act, pw_act, dw_bias=True, pw_bias=True):
        C = x.shape[1]
        return (
            x,
            rand(C, 1, k, k, dtype=dtype, device=device, scale=0.5),
            rand(C, dtype=dtype, device=device) if dw_bias else None,
            rand(cout, C, 1, 1, dtype=dtype, device=device, scale=0.5),
            rand(cout, dtype=dtype, device=device) if pw_bias else None,
            list(stride), list(padding), list(dilation), dw_act, pw_act,
        )

    def nchw(*shape):
        return rand(*shape, dtype=dtype, device=device, scale=2.0)

    def nhwc(*shape):
        return nchw(*shape).contiguous(memory_format=torch.channels_last)

    # MobileNet block: 3x3, stride 1, padding 1, relu6 then none
    yield conv(nchw(2, 4, 6, 7), 3, 6, (1, 1), (1, 1), (1, 1), "relu6", "none")
    # channels_last, stride 2
    yield conv(nhwc(2, 4, 7, 6), 3, 5, (2, 2), (1, 1), (1, 1), "relu", "relu")
    # 5x5, padding 2, no biases
    yield conv(nchw(1, 3, 8, 8), 5, 4, (1, 1), (2, 2), (1, 1), "none", "relu6", False, False)
    # channels_last 5x5, stride 2, dilation 2, dw bias only
    yield conv(nhwc(2, 5, 9, 10), 5, 3, (2, 2), (2, 2), (2, 2), "relu6", "relu", True, False)
    # asymmetric stride / padding / dilation, pw bias only
    yield conv(nchw(2, 4, 9, 7), 3, 6, (2, 1), (0, 2), (2, 1), "relu", "none", False, True)
    # non-contiguous x (sliced), padding 0
    yield conv(nchw(2, 4, 8, 12)[:, :, 1:, ::2], 3, 5, (1, 1), (0, 0), (1, 1), "none", "none")
    # non-contiguous x (permuted, neither NCHW nor NHWC)
    yield conv(nchw(2, 6, 4, 5).permute(0, 2, 1, 3), 3, 3, (1, 1), (1, 1), (1, 1), "relu6", "relu6")
    # [B, C, 1, 1]: NCHW and NHWC at once, 1x1 depthwise
    yield conv(nhwc(3, 4, 1, 1), 1, 5, (1, 1), (0, 0), (1, 1), "none", "relu")
    # B = 0
    yield conv(nchw(0, 4, 5, 5), 3, 6, (1, 1), (1, 1), (1, 1), "relu6", "none")
    # more channels than a vector register holds, odd counts
    yield conv(nhwc(2, 19, 6, 5), 3, 33, (1, 1), (1, 1), (1, 1), "relu6", "none")
    # C just past 32, Cout 40 (a partial vector of output channels), stride 2, batch 3
    yield conv(nhwc(3, 35, 11, 9), 3, 40, (2, 2), (1, 1), (1, 1), "relu", "relu6")
    # 5x5 with interior pixels, Cout 70: several panels of output channels, the last partial
    yield conv(nchw(2, 17, 13, 12), 5, 70, (1, 1), (2, 2), (1, 1), "relu6", "none", True, False)


_GENERATORS: dict[str, Callable[[torch.device, torch.dtype], Iterator[tuple]]] = {
    "nm_compress": _nm_compress,
    "nm_decompress": _nm_decompress,
    "nm_linear": _nm_linear,
    "nm_pack_weight": _nm_pack_weight,
    "nm_linear_packed": _nm_linear_packed,
    "quantize_rows": _quantize_rows,
    "int8_linear": _int8_linear,
    "int8_pack_weight": _int8_pack_weight,
    "int8_linear_packed": _int8_linear_packed,
    "nm_int8_linear": _nm_int8_linear,
    "int8_weight_linear": _int8_weight_linear,
    "dwsep_conv2d": _dwsep_conv2d,
}
assert set(_GENERATORS) == set(OPS)


def sample_inputs(op_name: str, device="cpu", dtype: torch.dtype = torch.float32) -> Iterator[tuple]:
    """Argument tuples for ``torch.ops.effdl.<op_name>`` on ``device`` in ``dtype``."""
    if op_name not in _GENERATORS:
        raise KeyError(f"no samples for effdl op {op_name!r}; add a generator to tests/samples.py")
    if dtype not in DTYPES[op_name]:
        raise ValueError(f"effdl.{op_name} does not support {dtype}")
    yield from _GENERATORS[op_name](torch.device(device), dtype)


def sample_id(op_name: str, i: int) -> str:
    return f"{op_name}-{i}"
