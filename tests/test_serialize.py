"""effdl.serialize: safetensors + JSON round trips of converted models, and every bad input."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from torch import nn

import effdl
from effdl import prune, quant, serialize
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear, SparseQLinear

STUDENT = {"num_classes": 10, "in_channels": 1, "input_size": 8, "width_mult": 0.5, "last_channel": 64,
           "inverted_residual_setting": [[1, 16, 1, 1], [4, 24, 2, 2]]}


def _student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = serialize.build("MobileNetV2", **STUDENT).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding them matters
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return model


def _x() -> torch.Tensor:
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _roundtrip(model: nn.Module, path) -> nn.Module:
    sizes = serialize.save(model, path)
    assert sizes == {p: os.path.getsize(p) for p in sizes}
    assert serialize.saved_bytes(path) == sum(sizes.values())
    return serialize.load(path)


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    with torch.inference_mode():
        assert torch.equal(a.eval()(_x()), b.eval()(_x()))


def test_plain_model_roundtrip_records_no_layers(tmp_path):
    model = _student()
    back = _roundtrip(model, tmp_path / "plain")
    _assert_same(model, back)
    doc = json.loads((tmp_path / "plain.json").read_text())
    assert doc["architecture"] == {"name": "MobileNetV2", "kwargs": STUDENT} and doc["layers"] == []
    assert not back.training


def test_fused_sparse_roundtrip(tmp_path):
    model = _student()
    prune.nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
    prune.make_permanent(model)
    effdl.fuse_dwsep_(model.eval(), verbose=False)
    effdl.sparsify_(model, verbose=False)
    back = _roundtrip(model, tmp_path / "m.safetensors")  # the suffix is accepted
    _assert_same(model, back)
    types = {rec["type"] for rec in json.loads((tmp_path / "m.json").read_text())["layers"]}
    assert types == {"DWSeparableConv2d", "Identity", "SparseLinear"}
    assert any(isinstance(m, DWSeparableConv2d) for m in back.modules())
    assert any(isinstance(m, SparseLinear) for m in back.modules())


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_int8_roundtrip(tmp_path, mode):
    model = effdl.quantize_(_student(), mode, verbose=False)
    back = _roundtrip(model, tmp_path / "q")
    _assert_same(model, back)
    (q,) = [m for m in back.modules() if isinstance(m, QLinear)]
    assert q.mode == mode and q.wq.dtype == torch.int8


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_sparse_int8_roundtrip(tmp_path, mode):
    """quantize_(sparsify_(model)): the 2:4 classifier becomes a SparseQLinear."""
    model = effdl.quantize_(effdl.sparsify_(_student(), verbose=False), mode, verbose=False)
    back = _roundtrip(model, tmp_path / "sq")
    _assert_same(model, back)
    (sq,) = [m for m in back.modules() if isinstance(m, SparseQLinear)]
    assert sq.mode == mode and sq.values_q.dtype == torch.int8 and (sq.n, sq.m) == (2, 4)


def test_ptq_roundtrip(tmp_path):
    model = _student()
    quant.prepare_ptq(model, 8, filter_fn=lambda m, n: isinstance(m, nn.Linear), verbose=False)
    quant.calibrate(model, _x())
    quant.convert_ptq(model, verbose=False)
    _assert_same(model, _roundtrip(model, tmp_path / "ptq"))


def test_channel_pruned_roundtrip(tmp_path):
    model = _student()
    small = prune.channel_prune(model, 0.5, _x())
    setattr(small, serialize.ARCHITECTURE_ATTR, getattr(model, serialize.ARCHITECTURE_ATTR))
    assert effdl.models.count_params(small) < effdl.models.count_params(model)
    _assert_same(small, _roundtrip(small, tmp_path / "ch"))


def test_channels_last_model_saves(tmp_path):
    model = _student().to(memory_format=torch.channels_last)
    _assert_same(model, _roundtrip(model, tmp_path / "cl"))


def test_register_architecture(tmp_path):
    serialize.register_architecture("TinyMLP", lambda hidden: nn.Sequential(nn.Flatten(), nn.Linear(64, hidden),
                                                                            nn.ReLU(), nn.Linear(hidden, 10)))
    try:
        model = serialize.build("TinyMLP", hidden=32)
        effdl.quantize_(model, verbose=False)
        _assert_same(model, _roundtrip(model, tmp_path / "mlp"))
    finally:
        serialize.ARCHITECTURES.pop("TinyMLP")


def test_architecture_argument_for_plain_models(tmp_path):
    torch.manual_seed(0)
    model = effdl.models.SmallResNet(in_channels=1, depths=(1,), widths=(8,))
    with pytest.raises(ValueError, match="which architecture"):
        serialize.save(model, tmp_path / "r")
    arch = {"name": "SmallResNet", "kwargs": {"in_channels": 1, "depths": [1], "widths": [8]}}
    serialize.save(model, tmp_path / "r", architecture=arch)
    _assert_same(model, serialize.load(tmp_path / "r"))


def test_unknown_architecture():
    with pytest.raises(ValueError, match=r"unknown architecture 'NoSuchNet'.*register_architecture"):
        serialize.build("NoSuchNet")


def test_bad_registrations_and_kwargs():
    with pytest.raises(ValueError, match="name"):
        serialize.register_architecture("", nn.Linear)
    with pytest.raises(ValueError, match="callable"):
        serialize.register_architecture("X", 3)
    with pytest.raises(ValueError, match="JSON-serializable"):
        serialize.build("SmallResNet", in_channels=torch.tensor(1))


def test_leftover_masks_are_refused(tmp_path):
    model = _student()
    prune.nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
    with pytest.raises(ValueError, match="make_permanent"):
        serialize.save(model, tmp_path / "masked")


def test_undescribable_layer_is_refused(tmp_path):
    model = _student()
    model.classifier[1] = nn.Bilinear(64, 64, 10)
    with pytest.raises(ValueError, match=r"classifier\.1.*Bilinear.*cannot describe"):
        serialize.save(model, tmp_path / "bad")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected"):
        serialize.load(tmp_path / "missing")
    serialize.save(_student(), tmp_path / "m")
    doc = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        serialize.load(tmp_path / "m")
    (tmp_path / "m.json").write_text(json.dumps({**doc, "format": "other"}))
    with pytest.raises(ValueError, match="not an effdl saved model"):
        serialize.load(tmp_path / "m")
    bad = {**doc, "layers": [{"name": "classifier.1", "type": "Frobnicator", "args": {}}]}
    (tmp_path / "m.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unknown type 'Frobnicator'"):
        serialize.load(tmp_path / "m")


def test_saved_sparse_int8_is_smaller(tmp_path):
    torch.manual_seed(0)
    dense = serialize.build("MobileNetV2", **{**STUDENT, "last_channel": 512}).eval()
    sparse = effdl.sparsify_(copy.deepcopy(dense), verbose=False)
    int8 = effdl.quantize_(copy.deepcopy(dense), verbose=False)
    sizes = {}
    for name, m in (("dense", dense), ("sparse", sparse), ("int8", int8)):
        serialize.save(m, tmp_path / name)
        sizes[name] = serialize.saved_bytes(tmp_path / name)
    # the classifier is 512x10 fp32 = 20480 bytes: 2:4 keeps half of it (+ 2 bits of metadata per kept
    # value), int8 a quarter (+ scales); the headers and layer records cost a few hundred bytes
    assert sizes["dense"] - 10240 - 1280 - 1000 < sizes["sparse"] < sizes["dense"] - 10240 + 1280 + 1000
    assert sizes["dense"] - 15360 - 1000 < sizes["int8"] < sizes["dense"] - 15360 + 1000
