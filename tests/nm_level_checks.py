"""nm_linear and nm_int8_linear against their references on the kernel level in force.

Run as a script in a fresh process whose ``EFFDL_CPU_ISA`` picks the level (the
native side chooses its kernel table once per process); ``test_nm_levels.py``
runs it once per level this machine has. It sweeps what the SIMD kernels
special-case: every N:M pattern the format allows a sample of, K with partial
vectors and partial meta bytes, M from 0 through 20 and larger (both the
direct and the packed-x paths), non-contiguous x, batch dims, all four float
dtypes, a corrupt mask (rejected with the op's message) and the gradients of
nm_linear; for 2:4 also nm_linear_packed (the same bits as nm_linear where it is
the level's fast path) and a corrupt packed weight. nm_int8_linear must be exact. Prints one JSON line (the level, the
number of cases, every mismatch) and exits non-zero on any mismatch.
"""

from __future__ import annotations

import json
import sys

import torch

import effdl
from effdl import _ext, formats, ops, reference

PATTERNS = [(2, 4), (1, 4), (1, 2), (3, 8), (2, 6), (5, 16)]
MS = [0, 1, 2, 3, 4, 5, 7, 8, 12, 15, 16, 17, 20, 33, 70, 130]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def _ks(m: int) -> list[int]:
    return sorted({m, m * 5, m * 18, m * 33})  # tails of 8 / 16 lanes, partial meta bytes


def _sparse(N: int, K: int, n: int, m: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    w = torch.randn(N, K, generator=g, dtype=torch.float64)
    return (w * formats.nm_mask(w, n, m)).to(dtype)


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    denom = ref.double().norm().item()
    return (out.double() - ref.double()).norm().item() / (denom if denom > 0 else 1.0)


def main() -> int:
    g = torch.Generator().manual_seed(0)
    bad: list[str] = []
    cases = 0
    for n, m in PATTERNS:
        for K in _ks(m):
            for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
                w = _sparse(9, K, n, m, dtype, g)
                values, meta = ops.nm_compress(w, n, m)
                bias = torch.randn(9, generator=g).to(dtype)
                packed = ops.nm_pack_weight(values, meta) if (n, m) == (2, 4) else None
                min_rows = _ext.nm_packed_min_rows(dtype)
                for M in MS if dtype in (torch.float32, torch.bfloat16) else (1, 17):
                    # x strided (a column slice) and, for some M, with batch dims
                    x = torch.randn(M, K + 3, generator=g).to(dtype)[:, 1 : K + 1]
                    if M % 5 == 0 and M:
                        x = x.reshape(5, M // 5, K)
                    y = ops.nm_linear(x, values, meta, n, m, bias)
                    ref = reference.nm_linear(x.double(), values.double(), meta, n, m, bias.double())
                    cases += 1
                    if y.shape != ref.shape or _rel(y, ref) > TOL[dtype]:
                        bad.append(f"nm_linear {n}:{m} K={K} M={M} {dtype}: {_rel(y, ref):.3g}")
                    if packed is None:
                        continue
                    # the packed layout: right everywhere, and where it is the fast path the very
                    # kernel nm_linear runs above its direct rows, so the same bits
                    yp = ops.nm_linear_packed(x, packed, 9, bias)
                    cases += 1
                    if yp.shape != ref.shape or _rel(yp, ref) > TOL[dtype]:
                        bad.append(f"nm_linear_packed K={K} M={M} {dtype}: {_rel(yp, ref):.3g}")
                    elif 0 <= min_rows <= M and not torch.equal(yp, y):
                        bad.append(f"nm_linear_packed K={K} M={M} {dtype}: not nm_linear's bits")
            # nm_int8_linear: exact int32 sums (unit scales keep the fp32 output exact)
            wq = torch.randint(-128, 128, (9, K), generator=g, dtype=torch.int8)
            wq = wq * formats.nm_mask(wq.float(), n, m).to(torch.int8)
            values8, meta8 = ops.nm_compress(wq.float(), n, m)
            values8 = values8.to(torch.int8)
            for M in MS:
                q = torch.randint(-128, 128, (M, K + 5), generator=g, dtype=torch.int8)[:, 2 : K + 2]
                y = ops.nm_int8_linear(q, torch.ones(M), values8, meta8, n, m, torch.ones(9))
                want = (q.long() @ wq.long().T).double()
                cases += 1
                if not torch.equal(y.double(), want.float().double()):
                    bad.append(f"nm_int8_linear {n}:{m} K={K} M={M}: not exact")
    # a corrupt mask: a group with one bit too many, rejected with the op's message
    for M in (1, 20, 130):
        w = _sparse(6, 40, 2, 4, torch.float32, g)
        values, meta = ops.nm_compress(w, 2, 4)
        meta = meta.clone()
        meta[3, 2] |= 0x0F
        cases += 1
        try:
            ops.nm_linear(torch.randn(M, 40), values, meta, 2, 4)
            bad.append(f"nm_linear M={M}: a corrupt mask was accepted")
        except RuntimeError as e:
            if "meta is not a valid 2:4 mask" not in str(e):
                bad.append(f"nm_linear M={M}: unexpected error {e}")
        try:
            ops.nm_int8_linear(
                torch.ones(M, 40, dtype=torch.int8),
                torch.ones(M),
                values.to(torch.int8),
                meta,
                2,
                4,
                torch.ones(6),
            )
            bad.append(f"nm_int8_linear M={M}: a corrupt mask was accepted")
        except RuntimeError as e:
            if "meta is not a valid 2:4 mask" not in str(e):
                bad.append(f"nm_int8_linear M={M}: unexpected error {e}")
    # a corrupt packed weight: a live nibble with three bits, rejected by nm_linear_packed
    for dtype in (torch.float32, torch.bfloat16):
        packed = ops.nm_pack_weight(*ops.nm_compress(_sparse(20, 64, 2, 4, dtype, g), 2, 4))
        words = packed[:, 16 * 32:].contiguous().view(torch.uint8)  # K = 64: 16 groups of pairs
        words[1, 4 * 3] |= 0x07  # panel 1, lane 3 (column 19), group 0
        corrupt = torch.cat([packed[:, : 16 * 32], words.view(dtype)], dim=1)
        for M in (1, 20):
            cases += 1
            try:
                ops.nm_linear_packed(torch.randn(M, 64).to(dtype), corrupt, 20)
                bad.append(f"nm_linear_packed M={M} {dtype}: a corrupt nibble was accepted")
            except RuntimeError as e:
                if "packed is not a 2:4 weight packed by nm_pack_weight" not in str(e):
                    bad.append(f"nm_linear_packed M={M} {dtype}: unexpected error {e}")
    # gradients of nm_linear, both paths
    for M in (3, 40):
        w = _sparse(7, 24, 2, 4, torch.float64, g)
        values, meta = ops.nm_compress(w, 2, 4)
        x = torch.randn(M, 24, dtype=torch.float64, requires_grad=True)
        v = values.clone().requires_grad_(True)
        b = torch.randn(7, dtype=torch.float64, requires_grad=True)
        cases += 1
        if not torch.autograd.gradcheck(
            lambda x, v, b, meta=meta: ops.nm_linear(x, v, meta, 2, 4, b), (x, v, b)
        ):
            bad.append(f"nm_linear gradients M={M}")
    print(json.dumps({"isa": effdl.info()["cpu_kernel_isa"], "cases": cases, "bad": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
