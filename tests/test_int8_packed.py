"""``int8_pack_weight`` / ``int8_linear_packed`` and ``QLinear``'s cache of the packed weight.

The packed op must give the bits of ``int8_linear`` on the canonical weight (the
per-level sweep is ``test_int8_linear_levels.py``); the module must repack
whenever its weight changes and never save the derived layout.
"""

from __future__ import annotations

import copy

import pytest
import torch
from samples import int8, rand, scales, strided
from torch import nn

import effdl
from effdl import _ext, backends, reference, serialize
from effdl.nn import QLinear

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"effdl._C not loaded: {_ext.load_error}")
E = torch.ops.effdl


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({4: torch.int32, 2: torch.int16}[t.element_size()])


@pytest.mark.parametrize(("N", "K"), [(1, 1), (16, 4), (17, 5), (31, 64), (65, 67), (0, 9), (7, 0), (48, 300)])
def test_pack_matches_reference_and_round_trips(N, K):
    wq = int8(N, K)
    packed = E.int8_pack_weight(wq)
    assert list(packed.shape) == [-(-N // 16), -(-K // 4) * 64 + 64]
    assert torch.equal(packed, reference.int8_pack_weight(wq))
    assert torch.equal(reference.int8_unpack_weight(packed, N, K), wq)


def test_pack_stores_the_shifted_column_sums():
    wq = torch.full((20, 131071), -128, dtype=torch.int8)
    wq[3, 5] = 127
    packed = E.int8_pack_weight(wq)
    groups = -(-131071 // 4)
    sums = packed[:, groups * 64:].contiguous().view(torch.int32).flatten()
    want = torch.zeros(32, dtype=torch.int64)
    want[:20] = wq.long().sum(1) * 128
    assert torch.equal(sums.long(), want)


@pytest.mark.parametrize("out_dtype", [None, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("M", "K", "N"), [(1, 4096, 33), (5, 771, 80), (16, 64, 17), (130, 300, 100)])
def test_packed_equals_int8_linear_bitwise(M, K, N, out_dtype):
    q, wq = int8(M, K), int8(N, K)
    qs, ws, bias = scales(M), scales(N), rand(N)
    want = E.int8_linear(q, qs, wq, ws, bias, out_dtype)
    got = E.int8_linear_packed(q, qs, E.int8_pack_weight(wq), ws, bias, out_dtype)
    assert got.dtype == want.dtype and torch.equal(_bits(got), _bits(want))


def test_packed_batch_dims_and_non_contiguous_inputs():
    q = strided(int8(2, 3, 40), "slice")
    qs = scales(3, 2).t()
    wq = int8(19, 40)
    packed = strided(E.int8_pack_weight(wq), "t")
    ws = strided(scales(19), "slice")
    got = E.int8_linear_packed(q, qs, packed, ws)
    assert got.shape == (2, 3, 19)
    assert torch.equal(got, E.int8_linear(q, qs, wq, ws))


def test_packed_m0():
    out = E.int8_linear_packed(int8(0, 24), scales(0), E.int8_pack_weight(int8(5, 24)), scales(5))
    assert out.shape == (0, 5)


def test_packed_ops_are_cpu_only():
    assert {"int8_pack_weight", "int8_linear_packed"} <= backends.CPU_ONLY_OPS
    assert not {"int8_pack_weight", "int8_linear_packed"} & set(backends.TRITON_OPS)
    assert backends.op_backends()["int8_linear_packed"]["cuda"] == "no kernel (CPU only)"


# ---------------------------------------------------------------- QLinear


def _qlinear(in_features=40, out_features=19, mode="dynamic") -> QLinear:
    return QLinear.from_float(nn.Linear(in_features, out_features), mode)


def _unpacked(mod: QLinear, x: torch.Tensor) -> torch.Tensor:
    q, qs = effdl.ops.quantize_rows(x)
    return effdl.ops.int8_linear(q, qs, mod.wq, mod.w_scale, mod.bias, out_dtype=x.dtype)


def test_qlinear_forward_uses_a_cached_pack(monkeypatch):
    mod, x = _qlinear(), torch.randn(3, 40)
    calls = []
    pack = effdl.ops.int8_pack_weight
    monkeypatch.setattr(effdl.ops, "int8_pack_weight", lambda wq: calls.append(1) or pack(wq))
    out = mod(x)
    assert torch.equal(out, _unpacked(mod, x))
    first = mod.packed_weight()
    mod(x)
    assert len(calls) == 1 and mod.packed_weight() is first
    assert torch.equal(first, reference.int8_pack_weight(mod.wq))


def test_qlinear_repacks_after_in_place_change():
    mod, x = _qlinear(), torch.randn(3, 40)
    before = mod.packed_weight()
    with torch.no_grad():
        mod.wq.mul_(-1)  # in place: same tensor, same address, new version
    assert mod.packed_weight() is not before
    assert torch.equal(mod(x), _unpacked(mod, x))


def test_qlinear_repacks_after_load_state_dict_and_replacement():
    mod, other, x = _qlinear(), _qlinear(), torch.randn(2, 40)
    mod(x)
    mod.load_state_dict(other.state_dict())
    assert torch.equal(mod(x), other(x))
    mod.wq = int8(19, 40)
    assert torch.equal(mod.packed_weight(), reference.int8_pack_weight(mod.wq))
    assert torch.equal(mod(x), _unpacked(mod, x))


def test_qlinear_never_saves_the_pack(tmp_path):
    serialize.register_architecture("PackMLP", lambda: nn.Sequential(nn.Linear(40, 19), nn.ReLU(), nn.Linear(19, 7)))
    try:
        model = effdl.quantize_(serialize.build("PackMLP"), verbose=False)
        x = torch.randn(4, 40)
        want = model(x)  # packs both layers
        assert all(m._packed for m in model.modules() if isinstance(m, QLinear))
        assert not any("pack" in key for key in model.state_dict())
        effdl.save(model, tmp_path / "m")
        loaded = effdl.load(tmp_path / "m")
    finally:
        serialize.ARCHITECTURES.pop("PackMLP")
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert not any(m._packed for m in loaded.modules() if isinstance(m, QLinear))
    assert torch.equal(loaded(x), want)
    mod = model[0]
    clone = copy.deepcopy(mod)  # a copy repacks its own weight
    assert clone.packed_weight() is not mod.packed_weight()
    assert torch.equal(clone.packed_weight(), mod.packed_weight())


def test_qlinear_reference_backend_skips_the_pack(monkeypatch):
    mod, x = _qlinear(), torch.randn(3, 40)
    effdl.set_backend("reference")
    try:
        monkeypatch.setattr(effdl.ops, "int8_pack_weight", lambda wq: pytest.fail("packed under 'reference'"))
        out = mod(x)
    finally:
        effdl.set_backend("auto")
    torch.testing.assert_close(out, _unpacked(mod, x))
