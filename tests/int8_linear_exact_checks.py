"""Exactness of ``int8_linear`` and ``int8_linear_packed`` on the kernel level this process runs (``EFFDL_CPU_ISA``).

Run by ``test_int8_linear_levels.py`` in a fresh interpreter per level. With unit
scales and no bias the output is ``float(sum_k q[i, k] * wq[o, k])``; it is compared
bit for bit against the same sum taken in int64 by torch. Shapes straddle the
VNNI kernel's tiles (4 rows, 4 output columns, 64-byte K steps, K % 4 != 0), and
K = 131071 (the int32 bound) with extreme values whose 128-shifted sums
pass 2^31 while the true sums stay exactly representable in fp32. Every case
also runs on the weight packed by ``int8_pack_weight`` (whose panels of 16 columns
and 4-byte groups the shapes straddle too), which must give the same bits.
Prints one JSON line: the level and the number of cases checked.
"""

from __future__ import annotations

import json

import torch

import effdl
from effdl import _ext


def _exact(q: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """``q @ wq.T`` in int64, then to fp32 (exact while the sums need <= 24 bits)."""
    return (q.long() @ wq.long().T).float()


def _run(q: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    ones_q = torch.ones(q.shape[:-1])
    ones_w = torch.ones(wq.shape[0])
    return torch.ops.effdl.int8_linear(q, ones_q, wq, ones_w)


def _run_packed(q: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    packed = torch.ops.effdl.int8_pack_weight(wq)
    return torch.ops.effdl.int8_linear_packed(q, torch.ones(q.shape[:-1]), packed, torch.ones(wq.shape[0]))


def _check(q: torch.Tensor, wq: torch.Tensor, what: str) -> None:
    want = _exact(q, wq)
    for name, got in (("int8_linear", _run(q, wq)), ("int8_linear_packed", _run_packed(q, wq))):
        if not torch.equal(got, want):
            bad = (got != want).nonzero()[0].tolist()
            raise AssertionError(f"{name} {what} q{list(q.shape)} wq{list(wq.shape)} at {bad}: "
                                 f"{got[tuple(bad)].item()} != {want[tuple(bad)].item()}")


def main() -> None:
    gen = torch.Generator().manual_seed(4)
    cases = 0

    def rand_int8(*shape: int) -> torch.Tensor:
        return torch.randint(-128, 128, shape, generator=gen, dtype=torch.int8)

    for m in (1, 2, 3, 4, 5, 9, 16, 33):
        for k in (1, 3, 5, 63, 64, 67, 130, 769):
            for n in (1, 3, 4, 6, 17, 37, 65, 80):
                _check(rand_int8(m, k), rand_int8(n, k), "random")
                cases += 1
    # leading batch dims; non-contiguous q and wq (the glue makes them contiguous)
    _check(rand_int8(2, 3, 70), rand_int8(9, 70), "batched")
    _check(rand_int8(70, 5).T, rand_int8(70, 11).T, "transposed q and wq")
    cases += 2

    k = 131071
    even = torch.arange(k) % 2 == 0
    for q_even, q_odd, w in ((-128, -128, -128), (127, 127, -128), (-128, -128, 127), (127, -127, -128),
                             (127, -127, 127), (-128, 127, 127)):
        row = torch.where(even, torch.tensor(q_even, dtype=torch.int8), torch.tensor(q_odd, dtype=torch.int8))
        q = torch.stack([row, row, rand_int8(k)])
        wq = torch.full((5, k), w, dtype=torch.int8)
        want = _exact(q, wq)[0, 0]
        assert want.double() == float((row.long() * w).sum()), "pattern sum must be exact in fp32"
        _check(q, wq, f"K={k} pattern {(q_even, q_odd, w)}")
        cases += 1
    print(json.dumps({"isa": effdl.info()["cpu_kernel_isa"], "cases": cases, "threads": torch.get_num_threads(),
                      "available": list(_ext.cpu_isa()["available"])}))


if __name__ == "__main__":
    main()
