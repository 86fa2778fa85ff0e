"""sparsify_ / quantize_ / fuse_dwsep_ on torchvision and Hugging Face models and
on hand-written Sequentials."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import effdl
from effdl import convert
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear

torchvision = pytest.importorskip("torchvision", reason="torchvision is needed for the model-conversion tests")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def _randomise_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)


def test_fuse_dwsep_mobilenet_v2_same_outputs(capsys):
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
    out_model = effdl.fuse_dwsep_(model)
    assert out_model is model
    assert count(model, DWSeparableConv2d) == 17  # every inverted-residual block
    assert "effdl.fuse_dwsep_: converted 17, skipped 0" in capsys.readouterr().out
    with torch.no_grad():
        assert rel_err(model(x), ref) < 1e-4
        assert rel_err(model(x.contiguous(memory_format=torch.channels_last)), ref) < 1e-4


def test_fuse_dwsep_mobilenet_v3_reports_unsupported_activation():
    model = torchvision.models.mobilenet_v3_small().eval()
    effdl.fuse_dwsep_(model, verbose=False)
    report = convert.last_report
    assert report is not None and len(report.converted) >= 1
    assert any("Hardswish" in reason for _, reason in report.skipped)


def test_fuse_dwsep_refuses_training_mode():
    model = torchvision.models.mobilenet_v2()
    effdl.fuse_dwsep_(model, verbose=False)
    assert count(model, DWSeparableConv2d) == 0
    assert "training mode" in convert.last_report.summary()


def test_fuse_dwsep_hand_written_sequential_with_trailing_activation():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.ReLU6(),
        nn.Conv2d(16, 16, 5, padding=2, groups=16), nn.Conv2d(16, 4, 1),
    ).eval()
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        ref = model(x)
    effdl.fuse_dwsep_(model, verbose=False)
    assert count(model, DWSeparableConv2d) == 2
    fused = [m for m in model.modules() if isinstance(m, DWSeparableConv2d)]
    assert (fused[0].dw_activation, fused[0].pw_activation) == ("relu", "relu6")
    assert (fused[1].dw_activation, fused[1].pw_activation) == ("none", "none")
    with torch.no_grad():
        assert rel_err(model(x), ref) < 1e-5


def test_sparsify_resnet18_and_mobilenet_v2():
    torch.manual_seed(0)
    for ctor in (torchvision.models.resnet18, torchvision.models.mobilenet_v2):
        model = ctor(num_classes=16).eval()
        ref_model = copy.deepcopy(model)
        effdl.sparsify_(model, verbose=False)
        assert count(model, SparseLinear) == 1 and count(model, nn.Linear) == 0
        # the converted model equals the float model with a magnitude 2:4-pruned classifier
        fc_name = "fc" if hasattr(ref_model, "fc") else "classifier.1"
        fc = ref_model.get_submodule(fc_name)
        with torch.no_grad():
            fc.weight.mul_(effdl.formats.nm_mask(fc.weight, 2, 4))
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            assert rel_err(model(x), ref_model(x)) < 1e-4


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_quantize_resnet18(mode):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=32).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    effdl.quantize_(model, mode=mode, verbose=False)
    assert isinstance(model.fc, QLinear) and model.fc.mode == mode
    with torch.no_grad():
        assert rel_err(model(x), ref) < 3e-2


def test_filter_fn_and_skip_reasons():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10), nn.Linear(10, 8))
    effdl.sparsify_(model, filter_fn=lambda mod, name: name != "0", verbose=False)
    report = convert.last_report
    assert isinstance(model[0], nn.Linear) and isinstance(model[2], SparseLinear)
    assert isinstance(model[3], nn.Linear)  # 10 % 4 != 0
    assert ("0", "excluded by filter_fn") in report.skipped
    assert ("3", "in_features not a multiple of 4") in report.skipped
    assert report.summary().startswith("effdl.sparsify_: converted 1, skipped 2")


def test_quantize_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        effdl.quantize_(nn.Linear(4, 4), mode="int4")


def _tiny_bert():
    transformers = pytest.importorskip("transformers", reason="transformers is needed for the BERT test")
    config = transformers.BertConfig(
        vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


@pytest.mark.parametrize("how", ["sparsify", "quantize_dynamic", "quantize_weight_only"])
def test_hugging_face_bert_from_config(how):
    model = _tiny_bert()
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state
    n_linear = count(model, nn.Linear)
    if how == "sparsify":
        effdl.sparsify_(model, verbose=False)
        assert count(model, SparseLinear) == n_linear
        tol = 0.5  # magnitude pruning without fine-tuning moves a random BERT's outputs
    else:
        effdl.quantize_(model, mode=how.removeprefix("quantize_"), verbose=False)
        assert count(model, QLinear) == n_linear
        tol = 5e-2
    with torch.no_grad():
        out = model(input_ids=ids).last_hidden_state
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert rel_err(out, ref) < tol


# ---------------------------------------------------------------- fuse_dwsep_ never changes a model's function


def _dw(c: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, padding=1, groups=c, bias=bias)


def _assert_same_function(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        ref = model(x)
        effdl.fuse_dwsep_(model, verbose=False)
        assert rel_err(model(x), ref) < 1e-5


def test_fuse_dwsep_without_any_bias():
    torch.manual_seed(0)
    model = nn.Sequential(_dw(4, bias=False), nn.ReLU(), nn.Conv2d(4, 8, 1, bias=False)).eval()
    _assert_same_function(model, torch.randn(2, 4, 9, 9))
    assert count(model, DWSeparableConv2d) == 1 and model[0].dw_bias is None


def test_fuse_dwsep_leaves_shared_layers_alone():
    torch.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(_dw(4), relu, nn.Conv2d(4, 4, 1), _dw(4), relu, nn.Conv2d(4, 8, 1)).eval()
    _assert_same_function(model, torch.randn(2, 4, 9, 9))
    assert count(model, DWSeparableConv2d) == 0
    assert all("also used elsewhere" in reason for _, reason in convert.last_report.skipped)
    dw = _dw(4)
    model = nn.Sequential(dw, nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), dw, nn.Conv2d(4, 4, 1)).eval()
    _randomise_bn(model)
    _assert_same_function(model, torch.randn(2, 4, 9, 9))


def test_fuse_dwsep_skips_batchnorm_in_training_mode_or_without_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(_dw(4), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 1),
                          _dw(8), nn.BatchNorm2d(8, track_running_stats=False), nn.Conv2d(8, 8, 1)).eval()
    model[1].train()
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        ref = model(x)
    effdl.fuse_dwsep_(model, verbose=False)
    with torch.no_grad():
        assert rel_err(model(x), ref) < 1e-5
    reasons = [reason for _, reason in convert.last_report.skipped]
    assert any("training mode" in r for r in reasons) and any("running statistics" in r for r in reasons)
    assert count(model, DWSeparableConv2d) == 0


def test_fuse_dwsep_does_not_look_into_sequentials_with_their_own_forward():
    class Tap(nn.Sequential):
        def forward(self, x):
            return super().forward(x) + self[0](x).mean(1, keepdim=True)

    torch.manual_seed(0)
    model = nn.Sequential(Tap(_dw(4), nn.ReLU(), nn.Conv2d(4, 4, 1))).eval()
    _assert_same_function(model, torch.randn(2, 4, 9, 9))
    assert count(model, DWSeparableConv2d) == 0


def test_conversions_skip_layers_with_hooks():
    model = nn.Sequential(nn.Linear(8, 8), nn.Identity())
    model[0].register_forward_hook(lambda *args: None)
    effdl.quantize_(model, verbose=False)
    assert isinstance(model[0], nn.Linear)
    assert "hooks" in convert.last_report.skipped[0][1]


def test_quantize_skips_float64_layers():
    model = nn.Sequential(nn.Linear(8, 8).double())
    effdl.quantize_(model, verbose=False)
    assert isinstance(model[0], nn.Linear)


@pytest.mark.parametrize("convert_fn", ["sparsify_", "quantize_"])
def test_conversions_take_pruned_layers_with_their_masks(convert_fn):
    """A layer pruned by effdl.prune (mask hooks still on) converts: its zeros are the weight
    the new module stores, and the mask goes; a foreign hook still blocks conversion."""
    from effdl import prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    prune.nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
    model[2].register_forward_hook(lambda *args: None)
    dense = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    getattr(effdl, convert_fn)(model, verbose=False)
    converted = model[0]
    assert type(converted) is (SparseLinear if convert_fn == "sparsify_" else QLinear)
    assert [name for name, _ in convert.last_report.skipped] == ["2"]  # the foreign hook
    assert prune.get_mask(model[2]) is not None
    if convert_fn == "sparsify_":
        assert torch.equal(converted.dense_weight(), dense[0])  # exactly the pruned weight
    else:
        assert bool((converted.wq[dense[0] == 0] == 0).all())
