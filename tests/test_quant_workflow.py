"""prepare / calibrate / convert, QAT gradients and state, DDP, and the SQNR report (small synthetic models)."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effdl
from effdl.nn import QLinear
from effdl.quant import (
    DynamicRowFakeQuantize,
    FakeQuantize,
    MovingAverageMinMaxObserver,
    PercentileObserver,
    QuantConv2d,
    QuantizedLayer,
    QuantLinear,
    calibrate,
    convert,
    convert_ptq,
    convert_qat,
    freeze_observers,
    prepare_ptq,
    prepare_qat,
    quantization_report,
    sqnr,
)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def batches(n: int, shape=(8, 16)) -> list[torch.Tensor]:
    return [torch.randn(*shape) for _ in range(n)]


# -- prepare


def test_prepare_swaps_layers_and_shares_parameters():
    model = ConvNet()
    conv_w, fc_w = model.conv.weight, model.fc.weight
    prepare_ptq(model, verbose=False)
    assert type(model.conv) is QuantConv2d and type(model.fc) is QuantLinear
    assert model.conv.weight is conv_w and model.fc.weight is fc_w  # optimizers keep working
    assert isinstance(model.fc.input_quant, DynamicRowFakeQuantize)  # 8-bit linear: what the kernel does
    assert isinstance(model.conv.input_quant, FakeQuantize)
    assert effdl.convert.last_report.action == "prepare_ptq" and len(effdl.convert.last_report.converted) == 2


def test_prepare_below_8_bits_uses_static_linear_inputs():
    model = prepare_qat(mlp(), bits=4, verbose=False)
    quant = model[0].input_quant
    assert isinstance(quant, FakeQuantize) and isinstance(quant.observer, MovingAverageMinMaxObserver)
    assert quant.scheme.num_bits == 4 and not quant.scheme.symmetric and quant.scheme.axis is None
    weight = model[0].weight_quant.scheme
    assert weight.num_bits == 4 and weight.symmetric and weight.axis == 0


def test_prepare_filter_hooks_and_bad_arguments():
    model = mlp()
    model[2].register_forward_hook(lambda *a: None)
    prepare_ptq(model, filter_fn=lambda mod, name: name != "4", verbose=False)
    assert type(model[0]) is QuantLinear and type(model[2]) is nn.Linear and type(model[4]) is nn.Linear
    skipped = dict(effdl.convert.last_report.skipped)
    assert "hooks" in skipped["2"] and "filter_fn" in skipped["4"]
    fresh = mlp()
    for bad in ({"bits": 9}, {"bits": 1}, {"act_bits": 0}, {"linear_activations": "per_row"}):
        with pytest.raises(ValueError):
            prepare_ptq(fresh, verbose=False, **bad)
    assert all(type(m) is not QuantLinear for m in fresh.modules())  # a bad call leaves the model untouched


# -- calibrate


def test_calibrate_observes_in_float_and_restores_modes():
    model = ConvNet().train()
    bn_mean = model.bn.running_mean.clone()
    prepare_ptq(model, verbose=False)
    data = [(torch.randn(4, 3, 6, 6), torch.zeros(4)) for _ in range(5)]
    assert calibrate(model, data, batches=3) is model
    assert torch.equal(model.bn.running_mean, bn_mean)  # ran in eval mode
    assert all(m.training for m in model.modules())  # modes restored
    observer = model.conv.input_quant.observer
    assert int(observer.num_batches) == 3
    # the conv input is the model input: observed in float, so the range is the data's own
    assert observer.min_val.item() == min(float(x.min()) for x, _ in data[:3])
    assert int(model.conv.input_quant.fake_quant_enabled) == 1


def test_calibrate_single_tensor_and_errors():
    model = prepare_ptq(ConvNet(), verbose=False)
    with pytest.raises(RuntimeError, match="no data observed"):
        model.eval()(torch.randn(2, 3, 4, 4))
    calibrate(model, torch.randn(2, 3, 4, 4))
    assert int(model.conv.input_quant.observer.num_batches) == 1
    with pytest.raises(ValueError, match="batches"):
        calibrate(model, batches(2), batches=0)
    with pytest.raises(ValueError, match="no batches"):
        calibrate(model, [])
    with pytest.raises(ValueError, match="prepare_ptq"):
        calibrate(mlp(), batches(1))


def test_calibrate_warns_about_layers_forward_never_reached():
    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.used(x)

    model = prepare_ptq(WithUnused(), bits=4, verbose=False)
    with pytest.warns(UserWarning, match="unused"):
        calibrate(model, batches(1, (2, 4)))


# -- convert


def test_ptq_8bit_linear_is_exactly_effdl_quantize_():
    float_model = mlp()
    reference = effdl.quantize_(copy.deepcopy(float_model), verbose=False)
    model = convert_ptq(calibrate(prepare_ptq(copy.deepcopy(float_model), verbose=False), batches(2)), verbose=False)
    x = torch.randn(5, 16)
    for i in (0, 2, 4):
        assert type(model[i]) is QLinear and model[i].mode == "dynamic"
        assert torch.equal(model[i].wq, reference[i].wq) and torch.equal(model[i].w_scale, reference[i].w_scale)
    assert torch.equal(model(x), reference(x))
    assert not any(type(m) is nn.Linear for m in effdl.quantize_(model, verbose=False).modules())


def test_convert_static_and_low_bit_layers():
    model = prepare_ptq(ConvNet(), bits=4, activation_observer=PercentileObserver, verbose=False)
    calibrate(model, [torch.randn(4, 3, 6, 6) for _ in range(2)])
    model.eval()
    x = torch.randn(3, 3, 6, 6)
    expected = model(x)
    convert(model, verbose=False)
    assert type(model.fc) is QuantizedLayer and type(model.fc.layer) is QLinear
    assert model.fc.layer.mode == "weight_only"
    assert int(model.fc.layer.wq.abs().max()) <= 7  # the 4-bit grid, stored exactly in int8
    assert type(model.conv) is QuantizedLayer and type(model.conv.layer) is nn.Conv2d
    # conv weights lie on a 4-bit grid per output channel: at most 15 distinct values each
    assert all(len(row.unique()) <= 15 for row in model.conv.layer.weight.detach().flatten(1))
    assert int(model.conv.input_quant.observer_enabled) == 0  # frozen
    assert torch.allclose(model(x), expected, rtol=1e-5, atol=1e-6)


def test_convert_errors():
    with pytest.raises(ValueError, match="prepare_ptq"):
        convert(mlp())
    model = prepare_ptq(ConvNet(), verbose=False)
    with pytest.raises(RuntimeError, match="calibrate"):
        convert(model)


# -- QAT


def test_qat_gradient_is_straight_through_by_hand():
    layer = prepare_qat(nn.Sequential(nn.Linear(3, 2)), bits=4, verbose=False)[0]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0, 0.25], [1.0, 0.0, -0.5]]))
        layer.bias.zero_()
    layer(torch.tensor([[0.0, 1.0, 3.0]]))  # training mode: the observer's first batch sets the range [0, 3]
    x = torch.tensor([[1.5, -2.0, 9.0]], requires_grad=True)
    layer(x).sum().backward()
    # this call moved the range 1% towards [-2, 9]: [-0.02, 3.06]; -2 and 9 lie outside, 1.5 inside
    lo, hi = (v.item() for v in layer.input_quant.observer.qparams().clip_range())
    assert lo == pytest.approx(-0.02) and hi == pytest.approx(3.06)
    w_hat = layer.weight_quant(layer.weight).detach()
    inside = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.allclose(x.grad, inside * w_hat.sum(0))
    # weights: d/dW sum(x_hat @ W_hat.T) = x_hat for every row; min-max weights are never clipped
    x_hat = layer.input_quant.observer.qparams().fake_quantize(x.detach())
    assert torch.allclose(layer.weight.grad, x_hat.expand(2, 3))


def test_qat_weights_follow_the_optimizer_and_observers_only_move_in_training():
    model = prepare_qat(mlp(), bits=4, verbose=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in batches(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    observer = model[0].input_quant.observer
    state = observer.min_val.clone(), observer.max_val.clone()
    model.eval()(10 * torch.randn(8, 16))  # evaluation does not move the ranges
    assert torch.equal(observer.min_val, state[0]) and torch.equal(observer.max_val, state[1])
    # the weight grid is recomputed on every call: it covers the weight after the last optimizer step
    assert torch.equal(model[0].weight_quant.observer.max_val, model[0].weight.detach().amax(1))
    freeze_observers(model.train())
    model(10 * torch.randn(8, 16))
    assert torch.equal(observer.max_val, state[1])


@pytest.mark.parametrize("bits", [8, 4])
def test_qat_state_dict_round_trip(bits):
    model = prepare_qat(ConvNet(), bits=bits, verbose=False)
    for x in batches(2, (4, 3, 6, 6)):
        model(x)
    fresh = prepare_qat(ConvNet(), bits=bits, verbose=False)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_convert_qat_matches_fake_quant_model():
    model = prepare_qat(mlp(), bits=8, verbose=False)
    for x in batches(3):
        model(x)
    model.eval()
    x = torch.randn(6, 16)
    expected = model(x)
    convert_qat(model, verbose=False)
    assert all(type(model[i]) is QLinear for i in (0, 2, 4))
    assert torch.allclose(model(x), expected, rtol=1e-4, atol=1e-5)


def test_qat_under_ddp_matches_plain_training(tmp_path):
    dist = torch.distributed
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialized in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(1)
        plain = prepare_qat(mlp(), bits=4, verbose=False)
        wrapped_inner = copy.deepcopy(plain)
        wrapped = nn.parallel.DistributedDataParallel(wrapped_inner)
        data = batches(3)
        for model in (plain, wrapped):
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            for x in data:
                opt.zero_grad()
                model(x).square().mean().backward()
                opt.step()
        for (name, a), b in zip(plain.state_dict().items(), wrapped_inner.state_dict().values(), strict=True):
            assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    finally:
        dist.destroy_process_group()


# -- SQNR


def test_sqnr_by_hand():
    assert sqnr(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 3.0])) == pytest.approx(10 * math.log10(25.0))
    assert sqnr(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == math.inf
    assert sqnr(torch.zeros(2), torch.ones(2)) == -math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        sqnr(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="empty"):
        sqnr(torch.ones(0), torch.ones(0))


@pytest.mark.parametrize("bits", [8, 4])
def test_report_points_at_the_layer_with_an_outlier(bits):
    torch.manual_seed(0)
    float_model = mlp()
    with torch.no_grad():
        # hidden unit 0 of layer 0 is a constant 1000 (an outlier feature) that layer 2 ignores:
        # layer 2's input grid is stretched to 1000 and its ordinary inputs are lost
        float_model[0].weight[0] = 0.0
        float_model[0].bias[0] = 1000.0
        float_model[2].weight[:, 0] = 0.0
    data = batches(4)
    quant = convert(calibrate(prepare_ptq(copy.deepcopy(float_model), bits=bits, verbose=False), data),
                    verbose=False)
    report = quantization_report(float_model, quant, data[0])
    alone = {layer.name: layer.alone_db for layer in report.layers}
    assert set(alone) == {"0", "2", "4"}
    assert report.worst().name == "2"
    assert alone["2"] < min(alone["0"], alone["4"]) - 15.0
    assert "SQNR alone" in report.table() and math.isfinite(report.output_db)


def test_report_on_prepared_model_and_modes_restored():
    float_model = ConvNet().train()
    quant = prepare_ptq(copy.deepcopy(float_model), verbose=False)
    calibrate(quant, batches(2, (4, 3, 6, 6)))
    quant.train()
    report = quantization_report(float_model, quant, torch.randn(4, 3, 6, 6))
    assert [layer.name for layer in report.layers] == ["conv", "fc"]
    assert all(layer.alone_db > 25 for layer in report.layers)  # 8 bits: tiny noise
    assert float_model.training and quant.training
    with pytest.raises(ValueError, match="no quantized layers"):
        quantization_report(float_model, ConvNet(), torch.randn(1, 3, 6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="no layer"):
            quantization_report(mlp(), quant, torch.randn(4, 3, 6, 6))
