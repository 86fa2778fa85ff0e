"""``nm_pack_weight`` / ``nm_linear_packed`` and ``SparseLinear``'s cache of the packed weight.

The packed op must give ``nm_linear``'s results (bit for bit where it is the
level's fast path; the per-level sweep is ``nm_level_checks.py``); the module
must use it only where it pays and autograd is not needed, repack whenever its
weight changes, and never save the derived layout.
"""

from __future__ import annotations

import copy

import pytest
import torch
from samples import nm_pack, nm_weight, rand, strided
from torch import nn

import effdl
from effdl import _checks, _ext, backends, reference, serialize
from effdl.nn import SparseLinear

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"effdl._C not loaded: {_ext.load_error}")
E = torch.ops.effdl
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _weight(N: int, K: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    return nm_pack(nm_weight(N, K, 2, 4, dtype), 2, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("N", "K"), [(1, 4), (16, 32), (17, 20), (31, 64), (65, 260), (0, 8), (7, 0), (40, 36)])
def test_pack_matches_reference_and_round_trips(N, K, dtype):
    values, meta = _weight(N, K, dtype)
    packed = E.nm_pack_weight(values, meta, 2, 4)
    assert packed.dtype == dtype and list(packed.shape) == _checks.nm_packed_shape(N, K, dtype)
    assert torch.equal(packed.view(torch.uint8), reference.nm_pack_weight(values, meta, 2, 4).view(torch.uint8))
    v2, m2 = reference.nm_unpack_weight(packed, N, K)
    assert torch.equal(v2, values) and torch.equal(m2, meta)


def test_pack_lays_out_pairs_and_nibbles_lane_by_lane():
    values, meta = _weight(18, 40)
    packed = E.nm_pack_weight(values, meta, 2, 4)
    G = 10
    # panel 1, group 3, lane 1 is column 17's pair of group 3
    assert torch.equal(packed[1, (3 * 16 + 1) * 2 : (3 * 16 + 1) * 2 + 2], values[17, 6:8])
    words = packed[:, G * 32 :].contiguous().view(torch.int32).view(2, 2, 16)  # [panel, block, lane]
    nib = lambda r, g: (int(meta[r, g // 2]) >> (4 * (g % 2))) & 15  # noqa: E731
    assert int(words[1, 1, 1]) & 0xFFFFFFFF == nib(17, 8) | nib(17, 9) << 4
    assert int(words[1, 0, 2]) == 0  # column 18 does not exist: zero nibbles
    assert not packed[1, (3 * 16 + 2) * 2 :: 32].any()


def test_pack_rejects_other_patterns_and_corrupt_meta():
    values, meta = nm_pack(nm_weight(5, 16, 1, 4), 1, 4)
    with pytest.raises(RuntimeError, match=r"nm_pack_weight: the packed layout is for 2:4 weights, got 1:4"):
        E.nm_pack_weight(values, meta, 1, 4)
    values, meta = _weight(5, 16)
    meta[3, 1] |= 0x0F
    with pytest.raises(RuntimeError, match=r"nm_pack_weight: meta row 3 is not a valid 2:4 mask"):
        E.nm_pack_weight(values, meta, 2, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("M", "K", "N"), [(1, 64, 33), (5, 20, 80), (13, 256, 17), (16, 520, 40), (40, 64, 3)])
def test_packed_matches_nm_linear(M, K, N, dtype):
    values, meta = _weight(N, K, dtype)
    x, bias = rand(M, K, dtype=dtype), rand(N, dtype=dtype)
    want = E.nm_linear(x, values, meta, 2, 4, bias)
    got = E.nm_linear_packed(x, E.nm_pack_weight(values, meta, 2, 4), N, bias)
    ref = reference.nm_linear(x.double(), values.double(), meta, 2, 4, bias.double())
    tol = 1e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-5
    assert got.dtype == dtype and got.shape == want.shape
    assert ((got.double() - ref).norm() / ref.norm()).item() < tol
    if 0 <= _ext.nm_packed_min_rows(dtype) <= M:  # the same kernel on both layouts
        assert torch.equal(got, want)


def test_packed_batch_dims_non_contiguous_and_edges():
    values, meta = _weight(19, 40)
    packed = strided(E.nm_pack_weight(values, meta, 2, 4), "t")
    x = strided(rand(2, 3, 40), "slice")
    assert torch.allclose(E.nm_linear_packed(x, packed, 19, None), E.nm_linear(x, values, meta, 2, 4), atol=1e-5)
    assert E.nm_linear_packed(rand(0, 40), packed, 19, None).shape == (0, 19)
    b = rand(3)
    empty_k = E.nm_pack_weight(*_weight(3, 0), 2, 4)
    assert torch.equal(E.nm_linear_packed(rand(4, 0), empty_k, 3, b), b.expand(4, 3))


def test_packed_refuses_a_mismatched_packing():
    packed = E.nm_pack_weight(*_weight(19, 40), 2, 4)
    with pytest.raises(RuntimeError, match=r"packed must be the Float tensor of shape \[2, 352\] that "
                                           r"nm_pack_weight makes of a \[20, 40\] 2:4 weight"):
        E.nm_linear_packed(rand(2, 40), torch.zeros(2, 351), 20, None)
    with pytest.raises(RuntimeError, match=r"packed must be the BFloat16 tensor"):
        E.nm_linear_packed(rand(2, 40, dtype=torch.bfloat16), packed, 19, None)
    with pytest.raises(RuntimeError, match=r"K=42 must be a multiple of 4"):
        E.nm_linear_packed(rand(2, 42), packed, 19, None)


def test_packed_ops_are_cpu_only():
    assert {"nm_pack_weight", "nm_linear_packed"} <= backends.CPU_ONLY_OPS
    assert not {"nm_pack_weight", "nm_linear_packed"} & set(backends.TRITON_OPS)
    assert backends.op_backends()["nm_linear_packed"]["cuda"] == "no kernel (CPU only)"


def test_min_rows_names_the_fast_path():
    isa = effdl.info()["cpu_kernel_isa"]
    want = 13 if isa == "avx512_bf16" else -1
    assert _ext.nm_packed_min_rows(torch.bfloat16) == want
    assert _ext.nm_packed_min_rows(torch.float32) == -1
    with pytest.raises(ValueError, match="dtype must be"):
        effdl._C.nm_packed_min_rows("int8")


# ---------------------------------------------------------------- SparseLinear


def _sparse(dtype=torch.bfloat16, in_features=64, out_features=37) -> SparseLinear:
    return SparseLinear.from_dense(nn.Linear(in_features, out_features).to(dtype))


def _fast(dtype=torch.bfloat16) -> int:
    rows = _ext.nm_packed_min_rows(dtype)
    if rows < 0:
        pytest.skip(f"no packed fast path for {dtype} at the {effdl.info()['cpu_kernel_isa']} CPU level")
    return rows


def _canonical(mod: SparseLinear, x: torch.Tensor) -> torch.Tensor:
    return effdl.ops.nm_linear(x, mod.values.detach(), mod.meta, 2, 4, mod.bias.detach())


def test_sparse_linear_uses_a_cached_pack_where_it_pays(monkeypatch):
    rows = _fast()
    mod = _sparse()
    calls = []
    pack = effdl.ops.nm_pack_weight
    monkeypatch.setattr(effdl.ops, "nm_pack_weight", lambda *a: calls.append(1) or pack(*a))
    with torch.no_grad():
        small = rand(rows - 1, 64, dtype=torch.bfloat16)
        assert torch.equal(mod(small), _canonical(mod, small)) and not calls  # below the crossover
        x = rand(3, rows, 64, dtype=torch.bfloat16)
        assert torch.equal(mod(x), _canonical(mod, x))
        first = mod.packed_weight()
        mod(x)
    assert len(calls) == 1 and mod.packed_weight() is first


def test_sparse_linear_keeps_autograd_on_the_canonical_path(monkeypatch):
    rows = _fast()
    mod = _sparse()
    monkeypatch.setattr(effdl.ops, "nm_linear_packed", lambda *a: pytest.fail("packed path under autograd"))
    x = rand(rows + 3, 64, dtype=torch.bfloat16)
    mod(x).float().sum().backward()
    assert mod.values.grad is not None


def test_sparse_linear_repacks_after_in_place_change_and_load():
    rows = _fast()
    mod, other = _sparse(), _sparse()
    x = rand(rows, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        before = mod.packed_weight()
        mod.values.mul_(-1)  # an optimizer step: same tensor, new version
        assert mod.packed_weight() is not before
        assert torch.equal(mod(x), _canonical(mod, x))
        mod.load_state_dict(other.state_dict())
        assert torch.equal(mod(x), other(x))


def test_sparse_linear_never_saves_the_pack(tmp_path):
    rows = _fast()
    serialize.register_architecture("PackSparse", lambda: nn.Sequential(nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 8)))
    try:
        model = effdl.sparsify_(serialize.build("PackSparse"), verbose=False).to(torch.bfloat16)
        x = rand(rows, 64, dtype=torch.bfloat16)
        with torch.no_grad():
            want = model(x)
        assert all(m._packed for m in model.modules() if isinstance(m, SparseLinear))
        assert not any("pack" in key for key in model.state_dict())
        effdl.save(model, tmp_path / "m")
        loaded = effdl.load(tmp_path / "m").to(torch.bfloat16)  # rebuilt in float32, then cast back
    finally:
        serialize.ARCHITECTURES.pop("PackSparse")
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert not any(m._packed for m in loaded.modules() if isinstance(m, SparseLinear))
    with torch.no_grad():
        assert torch.equal(loaded(x), want)
    clone = copy.deepcopy(model[0])
    assert torch.equal(clone.packed_weight(), model[0].packed_weight())
    model.float()  # a new dtype drops the pack
    assert not any(m._packed for m in model.modules() if isinstance(m, SparseLinear))


def test_sparse_linear_reference_backend_skips_the_pack(monkeypatch):
    rows = _fast()
    mod = _sparse()
    effdl.set_backend("reference")
    try:
        monkeypatch.setattr(effdl.ops, "nm_pack_weight", lambda *a: pytest.fail("packed under 'reference'"))
        with torch.no_grad():
            mod(rand(rows, 64, dtype=torch.bfloat16))
    finally:
        effdl.set_backend("auto")
