"""Every effdl operator's CPU kernel against its reference, on the kernel level in force.

Run as a script (``python tests/isa_op_checks.py``) in a fresh process whose
``EFFDL_CPU_ISA`` picks the level: the native side chooses its kernel table once
per process, so each level needs its own. Prints one JSON line — the level
``effdl.info()`` reports, whether it was forced, how many samples were checked
and every mismatch — and exits non-zero on any mismatch. ``tests/test_cpu_isa.py``
runs it once per level this machine has.

The oracles are those of ``test_ops.py``, on the shared samples (every float32
sample, the first two of each other dtype): bit-exact for the N:M format and the
int8 quantization, exact int32 products for the int8 matmuls (fp32 epilogue within
1e-6), fp64 references with a dtype tolerance for the float ops.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from samples import DTYPES, OPS, sample_inputs

import effdl
from effdl import _ext, reference

E = torch.ops.effdl
TOL = {torch.float32: 1e-5, torch.float64: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}
OTHER_DTYPE_SAMPLES = 2


def _f64(t):
    return t.detach().double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    denom = ref.norm().item()
    return (out - ref).norm().item() / (denom if denom > 0 else 1.0)


def _close_rel(out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert not out.isnan().any(), "NaN in the output"
    err = _rel_err(out, ref)
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


def _bitwise(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    if a.is_floating_point():
        int_t = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        a, b = a.contiguous().view(int_t), b.contiguous().view(int_t)
    assert torch.equal(a, b), "not bit-identical"


def _int8_epilogue(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert out.dtype == ref.dtype
    if out.dtype == torch.float32:
        atol = 1e-6 * (float(ref.abs().max()) if ref.numel() else 0.0)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=atol)
    else:
        _close_rel(out, ref, TOL[dtype])


def _nm_compress(args, dtype):
    w, n, m = args
    values, meta = E.nm_compress(w, n, m)
    if w.shape[0]:  # the reference cannot pack zero rows
        ref_values, ref_meta = reference.nm_compress(w, n, m)
        _bitwise(values, ref_values)
        _bitwise(meta, ref_meta)
    _bitwise(E.nm_decompress(values, meta, n, m), w.contiguous())


def _nm_decompress(args, dtype):
    values, meta, n, m = args
    w = E.nm_decompress(values, meta, n, m)
    if values.shape[0]:
        _bitwise(w, reference.nm_decompress(values, meta.contiguous(), n, m))


def _nm_linear(args, dtype):
    x, values, meta, n, m, bias = args
    out = E.nm_linear(x, values, meta, n, m, bias)
    _close_rel(out, reference.nm_linear(_f64(x), _f64(values), meta.contiguous(), n, m, _f64(bias)), TOL[dtype])


def _nm_pack_weight(args, dtype):
    values, meta, n, m = args
    _bitwise(E.nm_pack_weight(*args).view(torch.uint8), reference.nm_pack_weight(values, meta.contiguous(), n, m)
             .view(torch.uint8))


def _nm_linear_packed(args, dtype):
    x, packed, N, bias = args
    values, meta = reference.nm_unpack_weight(packed, N, x.shape[-1])
    out = E.nm_linear_packed(*args)
    _close_rel(out, reference.nm_linear(_f64(x), _f64(values), meta, 2, 4, _f64(bias)), TOL[dtype])
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if 0 <= _ext.nm_packed_min_rows(dtype) <= rows:  # the level's fast path: nm_linear's own kernel
        _bitwise(out, E.nm_linear(x, values, meta, 2, 4, bias))


def _quantize_rows(args, dtype):
    q, scale = E.quantize_rows(*args)
    ref_q, ref_scale = reference.quantize_rows(*args)
    _bitwise(q, ref_q)
    _bitwise(scale, ref_scale)


def _int8_linear(args, dtype):
    _int8_epilogue(E.int8_linear(*args), reference.int8_linear(*args), dtype)


def _int8_pack_weight(args, dtype):
    _bitwise(E.int8_pack_weight(*args), reference.int8_pack_weight(*args))


def _int8_linear_packed(args, dtype):
    q, q_scale, packed, w_scale, bias, out_dtype = args
    wq = reference.int8_unpack_weight(packed, w_scale.shape[0], q.shape[-1])
    # the same bits as int8_linear on the canonical weight, on every level
    _bitwise(E.int8_linear_packed(*args), E.int8_linear(q, q_scale, wq, w_scale, bias, out_dtype))
    _int8_epilogue(E.int8_linear_packed(*args), reference.int8_linear_packed(*args), dtype)


def _nm_int8_linear(args, dtype):
    q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype = args
    ref = reference.nm_int8_linear(q, q_scale, values_q, meta.contiguous(), n, m, w_scale, bias, out_dtype)
    _int8_epilogue(E.nm_int8_linear(*args), ref, dtype)
    # unit scales, no bias: the exact int32 products
    ones_q, ones_w = torch.ones_like(q_scale), torch.ones_like(w_scale)
    exact = reference.nm_int8_linear(q, ones_q, values_q, meta.contiguous(), n, m, ones_w).double()
    got = E.nm_int8_linear(q, ones_q, values_q, meta, n, m, ones_w).double()
    assert bool((exact.abs() < 2**24).all()) and torch.equal(got, exact), "int32 products differ"


def _int8_weight_linear(args, dtype):
    x, wq, w_scale, bias = args
    ref = _f64(x) @ (wq.double() * w_scale.double()[:, None]).t()
    if bias is not None:
        ref = ref + _f64(bias)
    _close_rel(E.int8_weight_linear(*args), ref, TOL[dtype])


def _dwsep_conv2d(args, dtype):
    _close_rel(E.dwsep_conv2d(*args), reference.dwsep_conv2d(*(_f64(a) for a in args)), TOL[dtype])


CHECKS: dict[str, Callable[[tuple, torch.dtype], None]] = {
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


def run() -> dict:
    missing = sorted(set(OPS) - set(CHECKS))
    failures = [f"{op}: no check in tests/isa_op_checks.py" for op in missing]
    checked = 0
    torch.manual_seed(0)
    for op in sorted(set(OPS) & set(CHECKS)):
        for dtype in DTYPES[op]:
            samples = sample_inputs(op, "cpu", dtype)
            if dtype != torch.float32:
                samples = itertools.islice(samples, OTHER_DTYPE_SAMPLES)
            for i, args in enumerate(samples):
                checked += 1
                try:
                    CHECKS[op](args, dtype)
                except Exception as exc:  # every mismatch is reported, not just the first
                    failures.append(f"{op}-{str(dtype)[6:]}-{i}: {type(exc).__name__}: {exc}"[:500])
    info = effdl.info()
    return {"isa": info["cpu_kernel_isa"], "forced": info["cpu_kernel_isa_forced"], "checked": checked,
            "failures": failures}


if __name__ == "__main__":
    result = run()
    print(json.dumps(result))
    sys.exit(1 if result["failures"] else 0)
