"""The benchmark cases: for each effdl op, the shapes and the peers a user would otherwise use.

A :class:`Case` is cheap to list; its ``build(llc)`` allocates the rotation sets
(enough weight/input sets that each candidate's total exceeds the last-level
cache), checks every candidate's output on set 0 against an fp64 reference
(never time garbage), and returns the candidates — effdl first, then the peers.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from effdl import _ext, formats, ops, reference

from .harness import Candidate, first_outputs, rel_err, rotation_sets

OPS = (
    "nm_linear",
    "int8_linear",
    "nm_int8_linear",
    "int8_weight_linear",
    "dwsep_conv2d",
    "nm_compress",
    "nm_decompress",
)


@dataclass
class Built:
    candidates: list[Candidate]  # effdl first
    n_sets: int
    set_bytes: dict[str, int]  # per rotation set, per candidate
    errors: dict[str, float]  # rel. error of each candidate's output vs the fp64 reference
    tol: float  # effdl's error above this marks the case as wrong
    ref: str  # what the errors are measured against


@dataclass
class Case:
    op: str
    name: str
    params: dict
    # dense-equivalent FLOPs per call (the GFLOP/s column); None for format conversion
    flops: float | None
    # FLOPs the kernel must do (half of dense for 2:4), for the distance to the ceiling
    work_flops: float | None
    bytes: float  # minimal bytes one effdl call moves (weights in effdl's format + input + output)
    build: Callable[[int], Built] = field(repr=False)


# ---------------------------------------------------------------- data


_PATTERNS_24 = torch.tensor(
    [[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=torch.bool
)


def _weights(n_sets: int, N: int, K: int, nm: bool) -> list[torch.Tensor]:
    """``n_sets`` random ``[N, K]`` weights; with ``nm``, 2:4 sparse.

    Set 0 is pruned by the library's own ``effdl.formats.nm_mask`` (magnitude); the
    others take one of the six 2:4 patterns per group uniformly at random — the same
    distribution that magnitude pruning gives i.i.d. weights, without ``nm_mask``'s
    stable sort, which takes seconds per hundred sets.
    """
    ws = []
    for i in range(n_sets):
        w = torch.randn(N, K) * K**-0.5
        if nm and i == 0:
            w = w * formats.nm_mask(w, 2, 4)
        elif nm:
            keep = _PATTERNS_24[torch.randint(0, 6, (N, K // 4))].view(N, K)
            w = w * keep
        ws.append(w)
    return ws


def _inputs(n_sets: int, *shape: int) -> list[torch.Tensor]:
    return [torch.randn(*shape) for _ in range(n_sets)]


def _ao_dynamic_int8(w: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.ao.quantization.quantize_dynamic`` of an ``nn.Linear`` holding ``w`` (FBGEMM/x86 engine)."""
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data.copy_(w)
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated (still the FBGEMM path)
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=torch.qint8)
    return q[0]


def _errors(outs: dict[str, torch.Tensor], ref: torch.Tensor) -> dict[str, float]:
    return {k: rel_err(v, ref) for k, v in outs.items()}


def _try(name: str, make: Callable[[], Candidate]) -> Candidate:
    try:
        return make()
    except Exception as exc:  # a missing peer is reported "unavailable", never fatal
        return Candidate(name, error=f"{type(exc).__name__}: {exc}"[:300])


# ---------------------------------------------------------------- linear ops


def _linear_case(op: str, K: int, N: int, M: int, dtype: torch.dtype = torch.float32) -> Case:
    params = {"K": K, "N": N, "M": M, "dtype": str(dtype).removeprefix("torch.")}
    dense = 2.0 * M * N * K
    size = dtype.itemsize
    if op == "nm_linear":
        wbytes = N * K // 2 * size + N * formats.meta_bytes(K)  # kept values + meta (4-bit mask per group of 4)
        work = dense / 2
    elif op == "nm_int8_linear":
        wbytes = N * K // 2 + N * formats.meta_bytes(K) + N * 4  # int8 kept values + meta + fp32 scales
        work = dense / 2
    else:
        wbytes = N * K + N * 4  # int8 + fp32 scales
        work = dense
    nbytes = wbytes + (M * K + M * N) * size
    if dtype != torch.float32:  # nm_linear and int8_weight_linear (bf16 x) have other dtypes
        build = _build_nm_linear if op == "nm_linear" else _build_int8_weight_linear
        return Case(op, f"K={K} N={N} M={M} bf16", params, dense, work, nbytes,
                    lambda llc: build(K, N, M, llc, dtype))
    return Case(
        op, f"K={K} N={N} M={M}", params, dense, work, nbytes, lambda llc: _BUILDERS[op](K, N, M, llc)
    )


def _build_nm_linear(K: int, N: int, M: int, llc: int, dtype: torch.dtype = torch.float32) -> Built:
    """2:4 ``nm_linear`` in ``dtype`` (fp32 or bf16) against dense ``F.linear`` on the same
    pruned weight in fp32 and in bf16."""
    xb_bytes = M * K * 2
    smallest = N * K * 2 + xb_bytes  # bf16 weight (nm values+meta is a little more)
    n = rotation_sets(smallest, llc)
    ws = _weights(n, N, K, nm=True)
    xs = _inputs(n, M, K)
    wbs = [w.bfloat16() for w in ws]
    xbs = [x.bfloat16() for x in xs]
    x_eff = xs if dtype == torch.float32 else xbs
    packed = [ops.nm_compress(w.to(dtype), 2, 4) for w in ws]
    name = "fp32" if dtype == torch.float32 else "bf16"
    # from nm_packed_min_rows rows on, effdl is what SparseLinear runs: the weight prepacked once
    # (cached on the module); the canonical layout, decoded per call, is then a peer
    prepacked_path = 0 <= _ext.nm_packed_min_rows(dtype) <= M
    canonical = Candidate(
        "effdl nm_linear" if prepacked_path else "effdl",
        [lambda x=x, p=p: ops.nm_linear(x, p[0], p[1], 2, 4) for x, p in zip(x_eff, packed, strict=True)],
        note=f"effdl.ops.nm_linear, 2:4 {name}" + (" on the canonical values + meta (decoded per call)"
                                                   if prepacked_path else ""),
    )
    cands = [canonical]
    if prepacked_path:
        prepacked = [ops.nm_pack_weight(v, m) for v, m in packed]
        cands.insert(0, Candidate(
            "effdl",
            [lambda x=x, p=p: ops.nm_linear_packed(x, p, N) for x, p in zip(x_eff, prepacked, strict=True)],
            note=f"effdl.ops.nm_linear_packed, 2:4 {name}, weight prepacked by nm_pack_weight (SparseLinear's path)",
        ))
    cands += [
        Candidate(
            "F.linear fp32",
            [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, ws, strict=True)],
            note="F.linear fp32, the same pruned weight dense",
        ),
        Candidate(
            "F.linear bf16",
            [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xbs, wbs, strict=True)],
            note="F.linear bf16, x and the dense weight cast to bf16",
        ),
    ]
    ref = F.linear(x_eff[0].double(), packed_dense(packed[0]).double())
    errs = _errors(first_outputs(cands), ref)
    sb = {
        "effdl": N * K // 2 * dtype.itemsize + N * formats.meta_bytes(K) + M * K * dtype.itemsize,
        "effdl nm_linear": N * K // 2 * dtype.itemsize + N * formats.meta_bytes(K) + M * K * dtype.itemsize,
        "F.linear fp32": N * K * 4 + M * K * 4,
        "F.linear bf16": N * K * 2 + xb_bytes,
    }
    # bf16: the reference takes effdl's own bf16 inputs, so only the fp32-accumulated sum's rounding remains
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    return Built(cands, n, sb, errs, tol, f"fp64 F.linear of the {name} inputs, same 2:4-pruned dense weight")


def packed_dense(p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return ops.nm_decompress(p[0], p[1], 2, 4)


def _w8a8(x, wq, s):
    """The full dynamic W8A8 path: quantize the rows of x, int8 GEMM, fused epilogue."""
    q, qs = ops.quantize_rows(x)
    return ops.int8_linear(q, qs, wq, s)


def _w8a8_packed(x, packed, s):
    """What ``QLinear`` (dynamic) runs on CPU: quantize the rows of x, int8 GEMM on the prepacked weight."""
    q, qs = ops.quantize_rows(x)
    return ops.int8_linear_packed(q, qs, packed, s)


def _ao_candidate(ws, xs, note: str) -> Candidate:
    """FBGEMM dynamic int8 (``quantize_dynamic``) of each weight, one per rotation set."""
    mods = [_ao_dynamic_int8(w) for w in ws]
    return Candidate("torch.ao dyn int8", [lambda x=x, m=m: m(x) for x, m in zip(xs, mods, strict=True)], note=note)


def _build_int8_linear(K: int, N: int, M: int, llc: int) -> Built:
    n = rotation_sets(N * K + M * K * 4, llc)
    ws = _weights(n, N, K, nm=False)
    xs = _inputs(n, M, K)
    qw = [ops.quantize_rows(w) for w in ws]  # symmetric per output channel
    packs = [(ops.int8_pack_weight(wq), s) for wq, s in qw]
    packed_bytes = packs[0][0].numel()

    def make_ao() -> Candidate:
        return _ao_candidate(ws, xs, "quantize_dynamic(nn.Linear), qint8 per-tensor weights, x86/FBGEMM engine")

    cands = [
        Candidate(
            "effdl",
            [lambda x=x, p=p: _w8a8_packed(x, *p) for x, p in zip(xs, packs, strict=True)],
            note="QLinear's dynamic CPU path: effdl.ops.quantize_rows(x) + effdl.ops.int8_linear_packed (prepacked weight)",
        ),
        Candidate("F.linear fp32", [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, ws, strict=True)]),
        _try("torch.ao dyn int8", make_ao),
        Candidate(
            "effdl unpacked",
            [lambda x=x, p=p: _w8a8(x, *p) for x, p in zip(xs, qw, strict=True)],
            note="effdl.ops.quantize_rows(x) + effdl.ops.int8_linear on the canonical [N, K] weight",
        ),
    ]
    ref = F.linear(xs[0].double(), ws[0].double())
    errs = _errors(first_outputs(cands), ref)
    sb = {
        "effdl": packed_bytes + N * 4 + M * K * 4,
        "F.linear fp32": N * K * 4 + M * K * 4,
        "torch.ao dyn int8": N * K + M * K * 4,
        "effdl unpacked": N * K + N * 4 + M * K * 4,
    }
    # int8 x int8 with per-row/per-channel scales: ~1% of the output norm is quantization error
    return Built(cands, n, sb, errs, 5e-2, "fp64 F.linear of the unquantized weight and input")


def _build_nm_int8_linear(K: int, N: int, M: int, llc: int) -> Built:
    """2:4-sparse W8A8 (the dynamic ``SparseQLinear`` path) against the dense paths a user
    would otherwise take for the same 2:4-pruned weight: fp32 F.linear, FBGEMM dynamic int8,
    and effdl's own dense int8_linear."""
    wbytes = N * K // 2 + N * formats.meta_bytes(K)
    n = rotation_sets(wbytes + M * K * 4, llc)
    ws = _weights(n, N, K, nm=True)
    xs = _inputs(n, M, K)
    sparse_q = []
    for w in ws:
        values, meta = ops.nm_compress(w, 2, 4)
        values_q, w_scale = ops.quantize_rows(values)  # per output channel, over the kept values
        sparse_q.append((values_q, meta, w_scale))
    dense_q = [ops.quantize_rows(w) for w in ws]
    dense_packed = [(ops.int8_pack_weight(wq), s) for wq, s in dense_q]

    def nm_w8a8(x, values_q, meta, w_scale):
        q, qs = ops.quantize_rows(x)
        return ops.nm_int8_linear(q, qs, values_q, meta, 2, 4, w_scale)

    def make_ao() -> Candidate:
        return _ao_candidate(ws, xs, "quantize_dynamic(nn.Linear) of the same pruned weight, dense, x86/FBGEMM engine")

    cands = [
        Candidate(
            "effdl",
            [lambda x=x, p=p: nm_w8a8(x, *p) for x, p in zip(xs, sparse_q, strict=True)],
            note="effdl.ops.quantize_rows(x) + effdl.ops.nm_int8_linear, 2:4 int8 weights",
        ),
        Candidate(
            "F.linear fp32",
            [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, ws, strict=True)],
            note="F.linear fp32, the same pruned weight dense",
        ),
        _try("torch.ao dyn int8", make_ao),
        Candidate(
            "effdl int8 dense",
            [lambda x=x, p=p: _w8a8(x, *p) for x, p in zip(xs, dense_q, strict=True)],
            note="effdl.ops.quantize_rows + effdl.ops.int8_linear on the pruned weight, dense int8",
        ),
        Candidate(
            "effdl int8 packed",
            [lambda x=x, p=p: _w8a8_packed(x, *p) for x, p in zip(xs, dense_packed, strict=True)],
            note="QLinear's dense path on the pruned weight: effdl.ops.quantize_rows + effdl.ops.int8_linear_packed",
        ),
    ]
    ref = F.linear(xs[0].double(), ws[0].double())
    errs = _errors(first_outputs(cands), ref)
    sb = {
        "effdl": wbytes + N * 4 + M * K * 4,
        "F.linear fp32": N * K * 4 + M * K * 4,
        "torch.ao dyn int8": N * K + M * K * 4,
        "effdl int8 dense": N * K + N * 4 + M * K * 4,
        "effdl int8 packed": dense_packed[0][0].numel() + N * 4 + M * K * 4,
    }
    return Built(cands, n, sb, errs, 5e-2, "fp64 F.linear of the unquantized 2:4-pruned weight and input")


def _build_int8_weight_linear(K: int, N: int, M: int, llc: int, dtype: torch.dtype = torch.float32) -> Built:
    """``int8_weight_linear`` with x in ``dtype`` (fp32 or bf16) against ``F.linear`` on the
    dequantized weight in fp32 and in bf16, and ``torch._weight_int8pack_mm``."""
    n = rotation_sets(N * K + M * K * dtype.itemsize, llc)
    ws = _weights(n, N, K, nm=False)
    xs = _inputs(n, M, K)
    qw = [ops.quantize_rows(w) for w in ws]
    deq = [wq.float() * s[:, None] for wq, s in qw]  # fp32 peer uses the dequantized weight: same math
    deq_bf16 = [w.bfloat16() for w in deq]
    xbs = [x.bfloat16() for x in xs]
    x_eff = xs if dtype == torch.float32 else xbs
    name = "fp32" if dtype == torch.float32 else "bf16"

    def make_pack() -> Candidate:
        # raises where unsupported (bf16 x at K = 8 crashes torch 2.14 outright: the probe is 64 wide)
        probe = torch.ones(64, 64, dtype=torch.int8)
        torch._weight_int8pack_mm(torch.randn(2, 64, dtype=dtype), probe, torch.ones(64, dtype=dtype))
        calls = [
            lambda x=x, p=p: torch._weight_int8pack_mm(x, p[0], p[1].to(dtype)) for x, p in zip(x_eff, qw, strict=True)
        ]
        return Candidate("_weight_int8pack_mm", calls, note=f"torch._weight_int8pack_mm ({name} x, int8 weight)")

    cands = [
        Candidate(
            "effdl",
            [lambda x=x, p=p: ops.int8_weight_linear(x, p[0], p[1]) for x, p in zip(x_eff, qw, strict=True)],
            note=f"effdl.ops.int8_weight_linear ({name} x, int8 weight)",
        ),
        Candidate(
            "F.linear fp32",
            [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, deq, strict=True)],
            note="F.linear fp32 on the dequantized weight",
        ),
        Candidate(
            "F.linear bf16",
            [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xbs, deq_bf16, strict=True)],
            note="F.linear bf16 on the dequantized weight and x cast to bf16 (the 16-bit alternative)",
        ),
        _try("_weight_int8pack_mm", make_pack),
    ]
    ref = F.linear(x_eff[0].double(), deq[0].double())
    errs = _errors(first_outputs(cands), ref)
    xb = M * K * dtype.itemsize
    sb = {
        "effdl": N * K + N * 4 + xb,
        "F.linear fp32": N * K * 4 + M * K * 4,
        "F.linear bf16": N * K * 2 + M * K * 2,
        "_weight_int8pack_mm": N * K + N * 4 + xb,
    }
    # bf16 outputs round to 2^-9 relative: the guard allows for that, not for garbage
    return Built(cands, n, sb, errs, 1e-4 if dtype == torch.float32 else 1e-2, "fp64 F.linear of the dequantized weight")


_BUILDERS = {
    "nm_linear": _build_nm_linear,
    "int8_linear": _build_int8_linear,
    "nm_int8_linear": _build_nm_int8_linear,
    "int8_weight_linear": _build_int8_weight_linear,
}

# (K, N): MiniLM-L12 (384 hidden, 1536 FFN), BERT-base (768, 3072), Llama-class 4096 and its 11008 FFN
LINEAR_SHAPES_FULL = [
    (384, 384),
    (384, 1536),
    (1536, 384),
    (768, 768),
    (768, 3072),
    (3072, 768),
    (4096, 4096),
    (4096, 11008),
]
LINEAR_M_FULL = (1, 16, 128, 512)
# weight-only int8 is a decode kernel: M = 1, 4, 16, and 128 to show where it stops paying
WEIGHT_ONLY_M_FULL = (1, 4, 16, 128)
# ... and with bf16 x (a bf16 model's activations) on the Llama-class layers
WEIGHT_ONLY_BF16_SHAPES = [(4096, 4096), (4096, 11008)]
# the N:M ops also at M = 4 (x read directly) and 512 (packed x, many strips)
NM_M_FULL = (1, 4, 16, 128, 512)
# nm_linear in bf16 (its fp32 runs cover every shape): the BERT FFN and Llama-class layers
NM_BF16_SHAPES = [(768, 3072), (3072, 768), (4096, 4096), (4096, 11008)]
NM_BF16_M = (1, 16, 128)
LINEAR_QUICK = [(768, 768, 1), (768, 768, 128), (4096, 4096, 1)]


# ---------------------------------------------------------------- dwsep_conv2d


def _dwsep_case(C: int, H: int, Cout: int, stride: int, B: int) -> Case:
    Ho = (H + 2 - 3) // stride + 1
    flops = 2.0 * B * Ho * Ho * (9 * C + C * Cout)
    nbytes = 4 * (B * C * H * H + B * Cout * Ho * Ho + C * 9 + C + Cout * C + Cout)
    params = {
        "B": B,
        "C": C,
        "H": H,
        "W": H,
        "Cout": Cout,
        "stride": stride,
        "kernel": 3,
        "dw_activation": "relu6",
        "pw_activation": "none",
        "dtype": "float32",
    }
    return Case(
        "dwsep_conv2d",
        f"B={B} C={C} {H}x{H} s{stride} -> {Cout}",
        params,
        flops,
        flops,
        nbytes,
        lambda llc: _build_dwsep(C, H, Cout, stride, B, llc),
    )


def _build_dwsep(C: int, H: int, Cout: int, stride: int, B: int, llc: int) -> Built:
    n = rotation_sets(B * C * H * H * 4, llc)
    xs = _inputs(n, B, C, H, H)
    xcl = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    dw = nn.Conv2d(C, C, 3, stride, 1, groups=C)
    pw = nn.Conv2d(C, Cout, 1)
    nchw = nn.Sequential(dw, nn.ReLU6(), pw).eval()
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    dww, dwb, pww, pwb = dw.weight.detach(), dw.bias.detach(), pw.weight.detach(), pw.bias.detach()

    def fused(x):
        return ops.dwsep_conv2d(x, dww, dwb, pww, pwb, (stride, stride), (1, 1), (1, 1), "relu6", "none")

    cands = [
        Candidate(
            "effdl",
            [lambda x=x: fused(x) for x in xcl],
            note="effdl.ops.dwsep_conv2d, channels_last input (the fast layout)",
        ),
        Candidate(
            "torch CL (oneDNN)",
            [lambda x=x: cl(x) for x in xcl],
            note="nn.Conv2d depthwise + ReLU6 + nn.Conv2d 1x1, channels_last",
        ),
        Candidate("torch NCHW", [lambda x=x: nchw(x) for x in xs], note="same modules, NCHW"),
    ]
    ref = reference.dwsep_conv2d(
        xs[0].double(),
        dww.double(),
        dwb.double(),
        pww.double(),
        pwb.double(),
        [stride] * 2,
        [1, 1],
        [1, 1],
        "relu6",
        "none",
    )
    errs = _errors(first_outputs(cands), ref)
    xb = B * C * H * H * 4
    return Built(
        cands,
        n,
        {"effdl": xb, "torch CL (oneDNN)": xb, "torch NCHW": xb},
        errs,
        1e-4,
        "fp64 reference.dwsep_conv2d",
    )


# Every distinct MobileNetV2 block at 224x224: expanded channels C at the
# depthwise input H, stride, projection Cout
DWSEP_BLOCKS_FULL = [
    (32, 112, 16, 1),
    (96, 112, 24, 2),
    (144, 56, 24, 1),
    (144, 56, 32, 2),
    (192, 28, 32, 1),
    (192, 28, 64, 2),
    (384, 14, 64, 1),
    (384, 14, 96, 1),
    (576, 14, 96, 1),
    (576, 14, 160, 2),
    (960, 7, 160, 1),
    (960, 7, 320, 1),
]
DWSEP_BATCHES_FULL = (1, 32)
DWSEP_QUICK = [(32, 112, 16, 1, 1), (384, 14, 64, 1, 1)]


# ---------------------------------------------------------------- N:M format conversion


def _nm_format_case(op: str, N: int, K: int) -> Case:
    packed = N * K // 2 * 4 + N * formats.meta_bytes(K)
    nbytes = N * K * 4 + packed  # compress: read dense, write packed; decompress: the reverse
    return Case(
        op,
        f"{N}x{K} fp32",
        {"rows": N, "K": K, "n": 2, "m": 4, "dtype": "float32"},
        None,
        None,
        nbytes,
        lambda llc: _build_nm_format(op, N, K, llc),
    )


def _build_nm_format(op: str, N: int, K: int, llc: int) -> Built:
    n = rotation_sets(N * K * 2 + N * formats.meta_bytes(K), llc)
    ws = _weights(n, N, K, nm=True)
    if op == "nm_compress":
        cands = [
            Candidate(
                "effdl", [lambda w=w: ops.nm_compress(w, 2, 4) for w in ws], note="effdl.ops.nm_compress"
            ),
            Candidate(
                "torch reference",
                [lambda w=w: reference.nm_compress(w, 2, 4) for w in ws],
                note="effdl.reference.nm_compress (pure torch)",
            ),
        ]
        outs = first_outputs(cands)
        v_ref, m_ref = outs["torch reference"]
        errs = {k: rel_err(v, v_ref) + float((m != m_ref).any()) for k, (v, m) in outs.items()}
        sb = {"effdl": N * K * 4, "torch reference": N * K * 4}
    else:
        packed = [ops.nm_compress(w, 2, 4) for w in ws]
        cands = [
            Candidate(
                "effdl",
                [lambda p=p: ops.nm_decompress(p[0], p[1], 2, 4) for p in packed],
                note="effdl.ops.nm_decompress",
            ),
            Candidate(
                "torch reference",
                [lambda p=p: reference.nm_decompress(p[0], p[1], 2, 4) for p in packed],
                note="effdl.reference.nm_decompress (pure torch)",
            ),
        ]
        errs = _errors(first_outputs(cands), ws[0])
        sb = dict.fromkeys(("effdl", "torch reference"), N * K * 2 + N * formats.meta_bytes(K))
    return Built(cands, n, sb, errs, 0.0, "exact (torch reference / the dense weight)")


NM_FORMAT_FULL = [(3072, 768), (4096, 4096), (11008, 4096)]
NM_FORMAT_QUICK = [(3072, 768)]


# ---------------------------------------------------------------- selection


def cases(op_names: list[str], quick: bool) -> list[Case]:
    out: list[Case] = []
    for op in op_names:
        if op in _BUILDERS:
            if quick:
                out += [_linear_case(op, K, N, M) for K, N, M in LINEAR_QUICK]
            else:
                ms = {"nm_linear": NM_M_FULL, "nm_int8_linear": NM_M_FULL, "int8_weight_linear": WEIGHT_ONLY_M_FULL}.get(
                    op, LINEAR_M_FULL)
                out += [_linear_case(op, K, N, M) for K, N in LINEAR_SHAPES_FULL for M in ms]
                if op == "nm_linear":
                    out += [_linear_case(op, K, N, M, torch.bfloat16) for K, N in NM_BF16_SHAPES for M in NM_BF16_M]
                if op == "int8_weight_linear":
                    out += [_linear_case(op, K, N, M, torch.bfloat16) for K, N in WEIGHT_ONLY_BF16_SHAPES
                            for M in WEIGHT_ONLY_M_FULL]
        elif op == "dwsep_conv2d":
            if quick:
                out += [_dwsep_case(C, H, Co, s, B) for C, H, Co, s, B in DWSEP_QUICK]
            else:
                out += [
                    _dwsep_case(C, H, Co, s, B)
                    for B in DWSEP_BATCHES_FULL
                    for C, H, Co, s in DWSEP_BLOCKS_FULL
                ]
        elif op in ("nm_compress", "nm_decompress"):
            out += [_nm_format_case(op, N, K) for N, K in (NM_FORMAT_QUICK if quick else NM_FORMAT_FULL)]
        else:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
    return out
