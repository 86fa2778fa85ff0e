"""Compile every effdl Triton kernel for an NVIDIA GPU without one (triton's ptxas).

Run as a script in a process without ``TRITON_INTERPRET`` (test_triton_backend.py
does): the interpreter never sees what only the compiler rejects (non-constexpr
globals, unsupported dot layouts). ``--all`` compiles every kernel in every
dtype; the default, every kernel once and each float-dot kernel in each of its
three dot paths (16-bit tensor cores, fp32 "ieee", fp64 in registers). Prints
one line per variant, then ``failures: N``.
"""

from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.autotuner import Autotuner

from effdl.triton import dwsep, int8, nm, nm_int8

POINTER = {"fp32": "*fp32", "fp16": "*fp16", "bf16": "*bf16", "fp64": "*fp64"}
QUICK = {"nm_compress fp32", "nm_decompress fp16", "nm_linear fp16", "nm_linear fp32", "nm_linear fp64",
         "dwsep_conv2d bf16", "dwsep_conv2d fp64", "quantize_rows bf16", "int8_linear -> bf16",
         "int8_weight_linear fp16", "nm_int8_linear -> fp16", "nm meta validation"}


def _variants():
    """(name, kernel, pointer types, constexprs): each dtype at one GPU tile of each kernel."""
    for dt, p in POINTER.items():
        fp64 = dt == "fp64"
        yield (f"nm_compress {dt}", nm._compress_kernel, dict(w_ptr=p, values_ptr=p, meta_ptr="*u8", failure_ptr="*i32"),
               dict(M_PAD=8, BLOCK_R=8, BLOCK_BYTES=4))
        yield (f"nm_decompress {dt}", nm._decompress_kernel, dict(values_ptr=p, meta_ptr="*u8", w_ptr=p),
               dict(BLOCK_R=16, BLOCK_C=64))
        tile = nm._FP64_BLOCKS if fp64 else nm._linear_kernel_tuned.configs[0].kwargs
        yield (f"nm_linear {dt}", nm._linear_kernel,
               dict(x_ptr=p, values_ptr=p, meta_ptr="*u8", bias_ptr=p, y_ptr=p), dict(HAS_BIAS=True, FP64=fp64, **tile))
        tile = dwsep._FP64_BLOCKS if fp64 else dwsep._dwsep_kernel_tuned.configs[0].kwargs
        yield (f"dwsep_conv2d {dt}", dwsep._dwsep_kernel,
               dict(x_ptr=p, dw_w_ptr=p, dw_b_ptr=p, pw_w_ptr=p, pw_b_ptr=p, y_ptr=p),
               dict(KH=3, KW=3, HAS_DW_BIAS=True, HAS_PW_BIAS=True, DW_ACT=2, PW_ACT=1, FP64=fp64, **tile))
        if fp64:
            continue
        yield (f"quantize_rows {dt}", int8._quantize_rows_kernel,
               dict(x_ptr=p, q_ptr="*i8", scale_ptr="*fp32", failure_ptr="*i32"), dict(BLOCK_M=4, BLOCK_K=1024))
        yield (f"int8_linear -> {dt}", int8._int8_linear_kernel,
               dict(q_ptr="*i8", q_scale_ptr="*fp32", wq_ptr="*i8", w_scale_ptr="*fp32", bias_ptr=p, y_ptr=p),
               dict(HAS_BIAS=True, **int8._int8_linear_kernel.configs[-1].kwargs))
        yield (f"nm_int8_linear -> {dt}", nm_int8._nm_int8_linear_kernel,
               dict(q_ptr="*i8", q_scale_ptr="*fp32", values_ptr="*i8", meta_ptr="*u8", w_scale_ptr="*fp32",
                    bias_ptr=p, y_ptr=p),
               dict(HAS_BIAS=True, **nm_int8._nm_int8_linear_kernel.configs[-1].kwargs))
        yield (f"int8_weight_linear {dt}", int8._int8_weight_linear_kernel,
               dict(x_ptr=p, wq_ptr="*i8", w_scale_ptr="*fp32", bias_ptr=p, y_ptr=p),
               dict(HAS_BIAS=True, **int8._int8_weight_linear_kernel.configs[0].kwargs))
    yield ("nm meta validation", nm._validate_kernel, dict(meta_ptr="*u8", failure_ptr="*i32"), dict(BLOCK_R=16, BLOCK_G=64))


def main(arch: int, every: bool) -> int:
    failures = 0
    for name, kernel, pointers, constexprs in _variants():
        if not every and name not in QUICK:
            continue
        fn = kernel.fn if isinstance(kernel, Autotuner) else kernel
        signature = {a: "constexpr" if a in constexprs else pointers.get(a, "i32") for a in fn.arg_names}
        try:
            triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                           target=GPUTarget("cuda", arch, 32), options={"num_warps": 4, "num_stages": 3})
            print(f"ok   sm_{arch} {name}", flush=True)
        except Exception as exc:
            failures += 1
            print(f"FAIL sm_{arch} {name}: {type(exc).__name__}: {str(exc)[-2000:]}", flush=True)
    print(f"failures: {failures}")
    return failures


if __name__ == "__main__":
    archs = [int(a) for a in sys.argv[1:] if a.isdigit()] or [90]
    sys.exit(1 if sum(main(arch, "--all" in sys.argv) for arch in archs) else 0)
