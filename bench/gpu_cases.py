"""The GPU benchmark cases (``python -m bench --device cuda``): effdl's CUDA and Triton kernels vs cuBLAS & co.

Each effdl op is timed twice, once per backend, forced explicitly with
``effdl.set_backend`` around each call ("effdl cuda": the native kernels of
``effdl._C``; "effdl triton": :mod:`effdl.triton`) — ``auto`` would pick Triton
wherever the native kernel is not yet validated. The peers are what a PyTorch
user on a GPU would otherwise run (DESIGN.md §6):

- ``nm_linear`` (2:4, bf16 and fp16): cuBLAS ``F.linear`` on the dense pruned
  weight; ``torch.sparse`` semi-structured weights through cuSPARSELt and CUTLASS.
- ``int8_linear`` (W8A8, bf16 in/out, activations quantized per row on the fly):
  ``torch._int_mm`` + a separate scale epilogue; cuBLAS bf16 ``F.linear``.
- ``nm_int8_linear`` (2:4 int8 weights, W8A8 as ``int8_linear``): effdl's dense
  ``int8_linear`` on the same weight (what the sparsity must beat), ``torch._int_mm``
  + epilogue; cuBLAS bf16.
- ``int8_weight_linear`` (int8 weights, bf16 activations): cuBLAS bf16.
- ``dwsep_conv2d`` (bf16, channels_last, ReLU6 between): cuDNN depthwise + pointwise.

At decode sizes (M <= 16) the linear ops also time "effdl cuda simple": the same native call with
``EFFDL_CUDA_SIMPLE_KERNELS=1``, i.e. the simple CUDA-core kernels instead of the tensor-core / GEMV
ones, so the table shows what those gained (as a peer column; it is skipped with "effdl cuda").
At prefill sizes ``int8_linear`` also times "effdl cuda wgmma" (``EFFDL_CUDA_WGMMA=1``: the opt-in
Hopper kernel) when ``EFFDL_BENCH_WGMMA=1``, which bench/device_check.sh sets once that kernel
passed its tests: the numbers that decide whether it becomes the default.

A :class:`GpuCase` is cheap to list (its FLOP and byte counts are formulas of the
shape); ``build(device, l2)`` allocates the rotation sets on ``device`` (enough
weight/input sets that a candidate's sets exceed twice the L2 cache) and the fp32
reference output; :func:`check` runs every candidate once on set 0 and measures
its error; a candidate that raises is kept with its error ("unavailable: reason")
and never timed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import effdl
from effdl import formats, ops

from .harness import Candidate, rel_err, rotation_sets

OPS = ("nm_linear", "int8_linear", "nm_int8_linear", "int8_weight_linear", "dwsep_conv2d")
# the effdl ops each benchmarked op calls (the W8A8 path quantizes its activations first)
USES = {"nm_linear": ("nm_linear",), "int8_linear": ("quantize_rows", "int8_linear"),
        "nm_int8_linear": ("quantize_rows", "nm_int8_linear"),
        "int8_weight_linear": ("int8_weight_linear",), "dwsep_conv2d": ("dwsep_conv2d",)}
EFFDL_BACKENDS = ("cuda", "triton")  # one "effdl <backend>" candidate each
SIMPLE = "effdl cuda simple"  # the native call on the simple CUDA kernels (decode sizes only)
SIMPLE_ENV = "EFFDL_CUDA_SIMPLE_KERNELS"
SIMPLE_MAX_M = 16  # the simple kernels take seconds at prefill sizes
WGMMA = "effdl cuda wgmma"  # int8_linear on the opt-in Hopper wgmma kernel (prefill sizes, sm_90)
WGMMA_ENV = "EFFDL_CUDA_WGMMA"
WGMMA_BENCH_ENV = "EFFDL_BENCH_WGMMA"  # not validated yet: timed only when the run asks for it
WGMMA_MIN_M = 128  # wgmma::kMinM: below it the glue keeps the mma.sync kernel

# Llama-class projections (K, N) and batch rows: decode, then prefill
LINEAR_SHAPES = [(4096, 4096), (4096, 11008)]
DECODE_M = (1, 4, 16)
PREFILL_M = (512, 2048, 8192)
LINEAR_QUICK = [(4096, 4096, 16), (4096, 4096, 2048)]
NM_DTYPES = (torch.bfloat16, torch.float16)
# MobileNetV2 depthwise + projection blocks at 224x224: (hidden C, input H=W, Cout, stride)
DWSEP_BLOCKS = [(32, 112, 16, 1), (96, 112, 24, 2), (144, 56, 24, 1), (384, 14, 64, 1), (960, 7, 160, 1)]
DWSEP_BATCHES = (1, 32)
DWSEP_QUICK = [(144, 56, 24, 1, 32)]

DEFAULT_L2 = 50 * (1 << 20)  # H200
TOL = {"float": 1e-2, "w8a8": 5e-2, "w8": 1e-2}  # rel. error vs the fp32 reference (bf16/fp16 outputs)

_DT = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass
class GpuBuilt:
    candidates: list[Candidate]  # effdl backends first, then the peers
    n_sets: int
    set_bytes: dict[str, int]  # bytes per rotation set, per candidate
    tol: float
    ref: str  # what the errors are measured against
    ref_out: torch.Tensor | None = field(default=None, repr=False)  # the reference output on set 0
    errors: dict[str, float] = field(default_factory=dict)  # filled by check(): rel. error vs ref_out


@dataclass
class GpuCase:
    op: str
    name: str
    params: dict
    flops: float  # dense-equivalent FLOPs per call (2*M*N*K; for 2:4 the dense matmul it replaces)
    work_flops: float  # FLOPs the kernel must do (half of dense for 2:4)
    bytes: float  # minimal bytes one effdl call moves (weights in effdl's format + input + output)
    build: Callable[[torch.device, int], GpuBuilt] = field(repr=False)


# ---------------------------------------------------------------- helpers


def _with_backend(backend: str, fn: Callable, *args) -> Callable[[], object]:
    """A call of ``fn(*args)`` with effdl's backend forced to ``backend`` (restored afterwards)."""

    def call():
        previous = effdl.get_backend()
        effdl.set_backend(backend)
        try:
            return fn(*args)
        finally:
            effdl.set_backend(previous)

    return call


def _cuda_with_env(env: str, fn: Callable, *args) -> Callable[[], object]:
    """A call of ``fn(*args)`` on effdl's cuda backend with ``env=1`` set around it (a kernel variant)."""
    inner = _with_backend("cuda", fn, *args)

    def call():
        previous = os.environ.get(env)
        os.environ[env] = "1"
        try:
            return inner()
        finally:
            if previous is None:
                del os.environ[env]
            else:
                os.environ[env] = previous

    return call


def _simple_candidate(M: int, fn: Callable, arg_sets: list[tuple], note: str) -> list[Candidate]:
    """``[Candidate(SIMPLE)]`` at decode sizes, else ``[]``."""
    if M > SIMPLE_MAX_M:
        return []
    return [Candidate(SIMPLE, [_cuda_with_env(SIMPLE_ENV, fn, *a) for a in arg_sets], note=f"{note}, {SIMPLE_ENV}=1")]


def _wgmma_candidate(M: int, fn: Callable, arg_sets: list[tuple], note: str) -> list[Candidate]:
    """``[Candidate(WGMMA)]`` at the sizes the opt-in wgmma kernel takes, when the run asks for it
    (``EFFDL_BENCH_WGMMA=1``: the device check sets it once that kernel passed its tests), else ``[]``."""
    if M < WGMMA_MIN_M or os.environ.get(WGMMA_BENCH_ENV) != "1":
        return []
    return [Candidate(WGMMA, [_cuda_with_env(WGMMA_ENV, fn, *a) for a in arg_sets], note=f"{note}, {WGMMA_ENV}=1")]


def torch_quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 in plain torch ops, as a torch user (or torchao) writes it: no sync, no checks."""
    scale = (x.float().abs().amax(-1) / 127.0).clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.round(x.float() / scale.unsqueeze(-1)).clamp(-127, 127).to(torch.int8)
    return q, scale


_PATTERNS_24 = [[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]]


def sparse24(N: int, K: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A random ``[N, K]`` weight with one of the six 2:4 patterns per group of 4 (uniformly)."""
    patterns = torch.tensor(_PATTERNS_24, dtype=torch.bool, device=device)
    keep = patterns[torch.randint(0, 6, (N, K // 4), device=device)].view(N, K)
    return (torch.randn(N, K, device=device) * K**-0.5 * keep).to(dtype)


def check(built: GpuBuilt, skip: dict[str, str] | None = None) -> GpuBuilt:
    """Run each candidate once on set 0 and measure its error against the reference output.

    A candidate named in ``skip`` is not run (its value is the reason, e.g. its kernels failed their
    tests on this GPU, where running it could lose the CUDA context); one that raises is marked
    unavailable with the reason. Drops the reference tensor afterwards.
    """
    if skip and "effdl cuda" in skip:  # the simple and wgmma kernels are effdl's cuda kernels too
        skip = {SIMPLE: skip["effdl cuda"], WGMMA: skip["effdl cuda"], **skip}
    for c in built.candidates:
        if c.error is None and skip and c.name in skip:
            c.error = skip[c.name]
    for c in built.candidates:
        if c.error is not None:
            continue
        try:  # the error measure synchronizes: an asynchronous fault of the call surfaces here too
            built.errors[c.name] = rel_err(c.calls[0](), built.ref_out)
        except Exception as exc:  # an unavailable kernel or peer is reported, never fatal
            c.error = f"{type(exc).__name__}: {exc}"[:300]
    built.ref_out = None
    return built


def _finish(cands: list[Candidate], n: int, set_bytes: dict, ref: torch.Tensor, tol: float, what: str) -> GpuBuilt:
    return GpuBuilt(cands, n, set_bytes, tol, what, ref_out=ref)


def _try(name: str, note: str, make: Callable[[], list[Callable[[], object]]]) -> Candidate:
    try:
        return Candidate(name, make(), note=note)
    except Exception as exc:  # e.g. to_sparse_semi_structured missing or refusing the shape
        return Candidate(name, error=f"{type(exc).__name__}: {exc}"[:300], note=note)


# ---------------------------------------------------------------- formulas


def linear_counts(op: str, K: int, N: int, M: int, act_bytes: int = 2) -> tuple[float, float, float]:
    """(dense-equivalent FLOPs, kernel FLOPs, minimal bytes) of one effdl call; activations ``act_bytes`` wide."""
    dense = 2.0 * M * N * K
    io = M * K * act_bytes + M * N * act_bytes
    if op == "nm_linear":
        return dense, dense / 2, N * K // 2 * act_bytes + N * formats.meta_bytes(K) + io
    if op in ("int8_linear", "int8_weight_linear"):
        return dense, dense, N * K + 4 * N + io  # int8 weight + fp32 scales
    if op == "nm_int8_linear":
        return dense, dense / 2, N * K // 2 + N * formats.meta_bytes(K) + 4 * N + io
    raise ValueError("linear_counts: op must be nm_linear, int8_linear, nm_int8_linear or int8_weight_linear, "
                     f"got {op!r}")


def dwsep_counts(C: int, H: int, Cout: int, stride: int, B: int, act_bytes: int = 2) -> tuple[float, float]:
    """(FLOPs, minimal bytes) of one fused 3x3 depthwise (padding 1) + 1x1 pointwise call."""
    Ho = (H + 2 - 3) // stride + 1
    flops = 2.0 * B * Ho * Ho * C * 9 + 2.0 * B * Ho * Ho * C * Cout
    nbytes = (B * C * H * H + B * Cout * Ho * Ho + C * 9 + C + Cout * C + Cout) * act_bytes
    return flops, nbytes


# ---------------------------------------------------------------- linear builders


def _build_nm_linear(K: int, N: int, M: int, dtype: torch.dtype, device: torch.device, l2: int) -> GpuBuilt:
    esize = torch.empty((), dtype=dtype).element_size()
    n = rotation_sets(N * K * esize // 2 + M * K * esize, l2, minimum=1)
    ws = [sparse24(N, K, dtype, device) for _ in range(n)]
    xs = [torch.randn(M, K, device=device).to(dtype) for _ in range(n)]
    packed = [formats_compress(w) for w in ws]
    cands = [
        Candidate(
            f"effdl {b}",
            [_with_backend(b, ops.nm_linear, x, v, m, 2, 4) for x, (v, m) in zip(xs, packed, strict=True)],
            note=f"effdl.ops.nm_linear 2:4 {_DT[dtype]}, backend {b!r}",
        )
        for b in EFFDL_BACKENDS
    ]
    cands += _simple_candidate(M, ops.nm_linear, [(x, v, m, 2, 4) for x, (v, m) in zip(xs, packed, strict=True)],
                               f"effdl.ops.nm_linear 2:4 {_DT[dtype]}")
    cands.append(Candidate("cuBLAS dense", [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, ws, strict=True)],
                           note=f"F.linear {_DT[dtype]} on the dense pruned weight (cuBLAS)"))
    sparse = getattr(torch.sparse, "SparseSemiStructuredTensor", None)
    for name, cls_name in (("cuSPARSELt", "SparseSemiStructuredTensorCUSPARSELT"),
                           ("CUTLASS 2:4", "SparseSemiStructuredTensorCUTLASS")):
        def make(cls_name=cls_name):
            if sparse is None:
                raise RuntimeError("torch.sparse.SparseSemiStructuredTensor is missing in this torch")
            cls = getattr(torch.sparse, cls_name)
            sws = [cls.from_dense(w) for w in ws]
            return [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, sws, strict=True)]

        cands.append(_try(name, f"F.linear on torch.sparse.{cls_name}.from_dense(w) "
                                "(to_sparse_semi_structured)", make))
    ref = F.linear(xs[0].float(), ws[0].float())
    wbytes = N * K // 2 * esize + N * formats.meta_bytes(K)
    set_bytes = {c.name: wbytes + M * K * esize for c in cands}
    set_bytes["cuBLAS dense"] = N * K * esize + M * K * esize
    return _finish(cands, n, set_bytes, ref, TOL["float"], "F.linear fp32 on the dense pruned weight")


def formats_compress(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """effdl's 2:4 packing of ``w`` by the reference (independent of the kernels under test).

    Packed where ``w`` lives; should the reference refuse that device, packed on the CPU and moved back.
    """
    from effdl import reference

    try:
        return reference.nm_compress(w, 2, 4)
    except (RuntimeError, NotImplementedError):
        values, meta = reference.nm_compress(w.cpu(), 2, 4)
        return values.to(w.device), meta.to(w.device)


def _int8_weights(N: int, K: int, n: int, device: torch.device):
    ws = [torch.randn(N, K, device=device) * K**-0.5 for _ in range(n)]
    qw = [torch_quantize_rows(w) for w in ws]
    deq = [(wq.float() * s[:, None]) for wq, s in qw]
    return qw, deq


def _w8a8(q_x: Callable, mm: Callable, x: torch.Tensor, wq: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    q, qs = q_x(x)
    return mm(q, qs, wq, ws)


def _int_mm_epilogue(x: torch.Tensor, wq_t: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Quantize x per row, ``torch._int_mm`` (int32), then a separate fp32 scale epilogue to bf16.

    ``_int_mm`` wants more than 16 rows on CUDA: decode batches are zero-padded to 32 rows,
    as a user must do, and the padding is part of the time.
    """
    M = x.shape[0]
    if M <= 16:
        x = F.pad(x, (0, 0, 0, 32 - M))
    q, qs = torch_quantize_rows(x)
    acc = torch._int_mm(q, wq_t)
    return (acc.float() * qs[:, None] * ws).to(torch.bfloat16)[:M]


def _build_int8_linear(K: int, N: int, M: int, device: torch.device, l2: int) -> GpuBuilt:
    n = rotation_sets(N * K + M * K * 2, l2, minimum=1)
    qw, deq = _int8_weights(N, K, n, device)
    xs = [torch.randn(M, K, device=device).bfloat16() for _ in range(n)]
    wbf = [d.bfloat16() for d in deq]

    def effdl_w8a8(x, wq, s):
        q, qs = ops.quantize_rows(x)
        return ops.int8_linear(q, qs, wq, s, None, torch.bfloat16)

    cands = [
        Candidate(
            f"effdl {b}",
            [_with_backend(b, effdl_w8a8, x, wq, s) for x, (wq, s) in zip(xs, qw, strict=True)],
            note=f"effdl.ops.quantize_rows + effdl.ops.int8_linear -> bf16, backend {b!r}",
        )
        for b in EFFDL_BACKENDS
    ]
    w8a8_args = [(x, wq, s) for x, (wq, s) in zip(xs, qw, strict=True)]
    cands += _simple_candidate(M, effdl_w8a8, w8a8_args, "effdl.ops.quantize_rows + effdl.ops.int8_linear -> bf16")
    cands += _wgmma_candidate(M, effdl_w8a8, w8a8_args, "effdl.ops.quantize_rows + effdl.ops.int8_linear -> bf16")
    cands.append(_try("_int_mm+epilogue", "torch quantize per row + torch._int_mm + fp32 scale epilogue -> bf16",
                      lambda: [lambda x=x, wt=wt, s=s: _int_mm_epilogue(x, wt, s)
                               for x, wt, (_, s) in zip(xs, [wq.t() for wq, _ in qw], qw, strict=True)]))
    cands.append(Candidate("cuBLAS bf16", [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, wbf, strict=True)],
                           note="F.linear bf16 on the dequantized weight (cuBLAS)"))
    ref = F.linear(xs[0].float(), deq[0])
    set_bytes = {c.name: N * K + 4 * N + M * K * 2 for c in cands}
    set_bytes["cuBLAS bf16"] = N * K * 2 + M * K * 2
    return _finish(cands, n, set_bytes, ref, TOL["w8a8"], "F.linear fp32 on the dequantized weight")


def _build_nm_int8_linear(K: int, N: int, M: int, device: torch.device, l2: int) -> GpuBuilt:
    n = rotation_sets(N * K // 2 + N * K // 8 + M * K * 2, l2, minimum=1)
    qw = [torch_quantize_rows(sparse24(N, K, torch.float32, device)) for _ in range(n)]  # zeros stay zeros
    packed = []
    for wq, _ in qw:
        values, meta = formats_compress(wq.float())  # int8 -> fp32 -> int8 is exact
        packed.append((values.to(torch.int8), meta))
    deq = [wq.float() * s[:, None] for wq, s in qw]
    xs = [torch.randn(M, K, device=device).bfloat16() for _ in range(n)]

    def effdl_sparse_w8a8(x, vq, meta, s):
        q, qs = ops.quantize_rows(x)
        return ops.nm_int8_linear(q, qs, vq, meta, 2, 4, s, None, torch.bfloat16)

    def effdl_dense_w8a8(x, wq, s):
        q, qs = ops.quantize_rows(x)
        return ops.int8_linear(q, qs, wq, s, None, torch.bfloat16)

    args = [(x, vq, meta, s) for x, (vq, meta), (_, s) in zip(xs, packed, qw, strict=True)]
    cands = [
        Candidate(f"effdl {b}", [_with_backend(b, effdl_sparse_w8a8, *a) for a in args],
                  note=f"effdl.ops.quantize_rows + effdl.ops.nm_int8_linear 2:4 -> bf16, backend {b!r}")
        for b in EFFDL_BACKENDS
    ]
    cands += _simple_candidate(M, effdl_sparse_w8a8, args, "effdl.ops.quantize_rows + effdl.ops.nm_int8_linear")
    cands.append(Candidate("effdl dense int8",
                           [_with_backend("cuda", effdl_dense_w8a8, x, wq, s) for x, (wq, s) in zip(xs, qw, strict=True)],
                           note="effdl.ops.quantize_rows + effdl.ops.int8_linear on the dense int8 weight, cuda"))
    cands.append(_try("_int_mm+epilogue", "torch quantize per row + torch._int_mm + fp32 scale epilogue -> bf16",
                      lambda: [lambda x=x, wt=wt, s=s: _int_mm_epilogue(x, wt, s)
                               for x, wt, (_, s) in zip(xs, [wq.t() for wq, _ in qw], qw, strict=True)]))
    wbf = [d.bfloat16() for d in deq]
    cands.append(Candidate("cuBLAS bf16", [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, wbf, strict=True)],
                           note="F.linear bf16 on the dequantized dense pruned weight (cuBLAS)"))
    ref = F.linear(xs[0].float(), deq[0])
    sparse_bytes = N * K // 2 + N * formats.meta_bytes(K) + 4 * N + M * K * 2
    set_bytes = {c.name: sparse_bytes for c in cands}
    set_bytes["effdl dense int8"] = set_bytes["_int_mm+epilogue"] = N * K + 4 * N + M * K * 2
    set_bytes["cuBLAS bf16"] = N * K * 2 + M * K * 2
    return _finish(cands, n, set_bytes, ref, TOL["w8a8"], "F.linear fp32 on the dequantized 2:4 weight")


def _build_int8_weight_linear(K: int, N: int, M: int, device: torch.device, l2: int) -> GpuBuilt:
    n = rotation_sets(N * K + M * K * 2, l2, minimum=1)
    qw, deq = _int8_weights(N, K, n, device)
    xs = [torch.randn(M, K, device=device).bfloat16() for _ in range(n)]
    wbf = [d.bfloat16() for d in deq]
    cands = [
        Candidate(
            f"effdl {b}",
            [_with_backend(b, ops.int8_weight_linear, x, wq, s) for x, (wq, s) in zip(xs, qw, strict=True)],
            note=f"effdl.ops.int8_weight_linear (bf16 x, int8 weight), backend {b!r}",
        )
        for b in EFFDL_BACKENDS
    ]
    cands += _simple_candidate(M, ops.int8_weight_linear, [(x, wq, s) for x, (wq, s) in zip(xs, qw, strict=True)],
                               "effdl.ops.int8_weight_linear (bf16 x, int8 weight)")
    cands.append(Candidate("cuBLAS bf16", [lambda x=x, w=w: F.linear(x, w) for x, w in zip(xs, wbf, strict=True)],
                           note="F.linear bf16 on the dequantized weight (cuBLAS)"))
    ref = F.linear(xs[0].float(), deq[0])
    set_bytes = {c.name: N * K + 4 * N + M * K * 2 for c in cands}
    set_bytes["cuBLAS bf16"] = N * K * 2 + M * K * 2
    return _finish(cands, n, set_bytes, ref, TOL["w8"], "F.linear fp32 on the dequantized weight")


# ---------------------------------------------------------------- dwsep


def _build_dwsep(C: int, H: int, Cout: int, stride: int, B: int, device: torch.device, l2: int) -> GpuBuilt:
    dtype = torch.bfloat16
    n = rotation_sets(B * C * H * H * 2, l2, minimum=1)
    xs = [torch.randn(B, C, H, H, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
          for _ in range(n)]
    dw_w = (torch.randn(C, 1, 3, 3, device=device) / 3).to(dtype)
    dw_b = (torch.randn(C, device=device) * 0.1).to(dtype)
    pw_w = (torch.randn(Cout, C, 1, 1, device=device) * C**-0.5).to(dtype).contiguous(
        memory_format=torch.channels_last)
    pw_b = (torch.randn(Cout, device=device) * 0.1).to(dtype)
    args = (dw_w, dw_b, pw_w, pw_b, [stride, stride], [1, 1], [1, 1], "relu6", "none")

    def torch_dwsep(x, dw_w=dw_w, dw_b=dw_b, pw_w=pw_w, pw_b=pw_b):
        h = F.hardtanh(F.conv2d(x, dw_w, dw_b, stride, 1, 1, C), 0.0, 6.0)
        return F.conv2d(h, pw_w, pw_b)

    cands = [
        Candidate(f"effdl {b}", [_with_backend(b, ops.dwsep_conv2d, x, *args) for x in xs],
                  note=f"effdl.ops.dwsep_conv2d bf16 channels_last, backend {b!r}")
        for b in EFFDL_BACKENDS
    ]
    cands.append(Candidate("cuDNN dw+pw", [lambda x=x: torch_dwsep(x) for x in xs],
                           note="F.conv2d depthwise 3x3 + ReLU6 + F.conv2d 1x1, bf16 channels_last (cuDNN)"))
    ref = torch_dwsep(xs[0].float(), dw_w.float(), dw_b.float(), pw_w.float(), pw_b.float())
    set_bytes = {c.name: B * C * H * H * 2 for c in cands}
    return _finish(cands, n, set_bytes, ref, TOL["float"], "the same convolutions in fp32")


# ---------------------------------------------------------------- the case list


def linear_case(op: str, K: int, N: int, M: int, dtype: torch.dtype = torch.bfloat16) -> GpuCase:
    flops, work, nbytes = linear_counts(op, K, N, M)
    params = {"K": K, "N": N, "M": M, "dtype": _DT[dtype], "phase": "decode" if M <= 16 else "prefill"}
    if op == "nm_linear":
        build = lambda dev, l2: _build_nm_linear(K, N, M, dtype, dev, l2)  # noqa: E731
        name = f"K={K} N={N} M={M} {_DT[dtype]}"
    elif op == "int8_linear":
        build = lambda dev, l2: _build_int8_linear(K, N, M, dev, l2)  # noqa: E731
        name = f"K={K} N={N} M={M}"
    elif op == "nm_int8_linear":
        build = lambda dev, l2: _build_nm_int8_linear(K, N, M, dev, l2)  # noqa: E731
        name = f"K={K} N={N} M={M}"
    else:
        build = lambda dev, l2: _build_int8_weight_linear(K, N, M, dev, l2)  # noqa: E731
        name = f"K={K} N={N} M={M}"
    return GpuCase(op, name, params, flops, work, nbytes, build)


def dwsep_case(C: int, H: int, Cout: int, stride: int, B: int) -> GpuCase:
    flops, nbytes = dwsep_counts(C, H, Cout, stride, B)
    params = {"C": C, "H": H, "W": H, "Cout": Cout, "stride": stride, "B": B, "dtype": "bf16"}
    return GpuCase("dwsep_conv2d", f"C={C} {H}x{H} Cout={Cout} s={stride} B={B}", params, flops, flops, nbytes,
                   lambda dev, l2: _build_dwsep(C, H, Cout, stride, B, dev, l2))


def _priority(shapes: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """``(K, N, M)`` reordered so that any prefix spreads over both weights and decode/prefill:
    a run cut short by its time budget (Triton's first compilations and autotuning take a
    while) still has one decode and one prefill case per weight."""
    first = [(4096, 4096, 16), (4096, 4096, 2048), (4096, 11008, 1), (4096, 11008, 8192),
             (4096, 4096, 1), (4096, 4096, 512), (4096, 11008, 16), (4096, 11008, 2048)]
    return [s for s in first if s in shapes] + [s for s in shapes if s not in first]


def _per_op(op: str, quick: bool) -> list[GpuCase]:
    if op == "dwsep_conv2d":
        blocks = DWSEP_QUICK if quick else [(C, H, Co, s, B) for C, H, Co, s in DWSEP_BLOCKS
                                            for B in sorted(DWSEP_BATCHES, reverse=True)]
        return [dwsep_case(*b) for b in blocks]
    shapes = LINEAR_QUICK if quick else _priority([(K, N, M) for K, N in LINEAR_SHAPES
                                                   for M in (*DECODE_M, *PREFILL_M)])
    dtypes = NM_DTYPES if op == "nm_linear" and not quick else (torch.bfloat16,)
    return [linear_case(op, K, N, M, dt) for dt in dtypes for K, N, M in shapes]


def gpu_cases(op_names: list[str], quick: bool) -> list[GpuCase]:
    """The cases of ``op_names``, interleaved across ops (round-robin) so that a run cut short by its
    time budget has covered every op."""
    for op in op_names:
        if op not in OPS:
            raise ValueError(f"unknown GPU op {op!r}; choose from {', '.join(OPS)}")
    lists = [_per_op(op, quick) for op in op_names]
    out: list[GpuCase] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out


def l2_bytes(device: torch.device) -> int:
    """The GPU's L2 cache size (``DEFAULT_L2`` where torch does not say)."""
    if device.type != "cuda":
        return DEFAULT_L2
    size = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)
    return int(size) if size and size > 0 else DEFAULT_L2


def total_bytes(built: GpuBuilt) -> int:
    """Largest per-candidate rotation footprint of a built case (to report that the L2 is defeated)."""
    return max(built.set_bytes.values(), default=0) * built.n_sets

