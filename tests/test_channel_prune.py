"""Structured channel pruning: ranking, rewiring across adds / concats / depthwise / flatten,
torchvision models, bad input, and accuracy on the real digits data."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from digits import SmallCNN, accuracy, train_loader, trained_cnn
from torch import nn
from torchvision.models import mobilenet_v2, resnet18

from effdl import training
from effdl.models import count_flops, count_params
from effdl.prune.channel import channel_groups, channel_prune

# ---------------------------------------------------------------------------------------------
# test models and helpers
# ---------------------------------------------------------------------------------------------


def conv_bn(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(cout))


class ConcatNet(nn.Module):
    """Two branches concatenated, a depthwise conv over the concat, a residual add that ties
    the last conv's channels to both branches across the concat offsets, flatten → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.a, self.b = conv_bn(8, 8), conv_bn(8, 8)
        self.dw = conv_bn(16, 16, groups=16)
        self.c = nn.Conv2d(16, 16, 1)
        self.head = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        z = self.c(F.relu6(self.dw(y))) + y
        return self.head(torch.flatten(F.adaptive_avg_pool2d(z, 2), 1))


class Branchy(nn.Module):
    """Control flow on the value of the input: fx cannot trace it, the dynamic recording can."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.skip = conv_bn(3, 8), nn.Conv2d(3, 8, 1)
        self.head = nn.Linear(8 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if x.mean() > -100:
            y = y + self.skip(x)
        return self.head(y.relu().view(y.size(0), -1))


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that slicing them matters."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model


@torch.no_grad()
def zero_even_channels(model: nn.Module, example: torch.Tensor) -> int:
    """Make every even channel (unit) of every prunable group exactly zero wherever it flows:
    zero filters and biases in each conv/linear/depthwise conv of the group, zero BN mean and
    shift. Returns how many channels a 50 % prune removes (all of them zero channels)."""
    removed = 0
    for group in channel_groups(model, example):
        if group.pinned is not None:
            continue
        removed += group.units // 2
        for name, units in group.layers.items():
            zero = torch.tensor([u % 2 == 0 for u in units])
            m = model.get_submodule(name)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean[zero] = 0
                m.bias[zero] = 0
            else:
                m.weight[zero] = 0
                if m.bias is not None:
                    m.bias[zero] = 0
    return removed


def out_channels(report) -> int:
    return sum(c.out_before - c.out_after for n, c in report.layers.items())


# ---------------------------------------------------------------------------------------------
# ranking on hand-made weights
# ---------------------------------------------------------------------------------------------


def _ranking_model() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(1, 3, 2, bias=False), nn.ReLU(), nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        # L1 norms 3, 4, 20 ; L2 norms 3, 2, 10: L1 drops filter 0, L2 drops filter 1
        model[0].weight.copy_(torch.tensor([[3.0, 0, 0, 0], [1, 1, 1, 1], [5, 5, 5, 5]]).view(3, 1, 2, 2))
        model[2].weight.copy_(torch.arange(6.0).view(2, 3, 1, 1))
    return model


@pytest.mark.parametrize("criterion, kept", [("l1", [1, 2]), ("l2", [0, 2])])
def test_ranking_by_filter_norm(criterion, kept):
    model = _ranking_model()
    pruned = channel_prune(model, 1 / 3, torch.randn(1, 1, 4, 4), criterion=criterion)
    assert torch.equal(pruned[0].weight, model[0].weight[kept])
    assert torch.equal(pruned[2].weight, model[2].weight[:, kept])  # the consumer's matching columns
    assert torch.equal(pruned[2].bias, model[2].bias)
    assert pruned.prune_report.layers["0"].kept == kept
    assert (pruned[0].out_channels, pruned[2].in_channels) == (2, 2)
    assert pruned.prune_report.unpruned == {"2": "its channels are outputs of the model"}


def test_tied_channels_rank_by_summed_importance():
    """Two convs added together: each channel's importance is the sum over both (each layer
    normalised by its mean), and the same index goes from both."""

    class Add(nn.Module):
        def __init__(self):
            super().__init__()
            self.p, self.q = nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(1, 2, 1, bias=False)
            self.out = nn.Linear(2, 1)

        def forward(self, x):
            return self.out((self.p(x) + self.q(x)).mean((2, 3)))

    model = Add()
    with torch.no_grad():
        model.p.weight.copy_(torch.tensor([1.0, 3.0]).view(2, 1, 1, 1))  # / mean 2:  0.5, 1.5
        model.q.weight.copy_(torch.tensor([4.0, 2.0]).view(2, 1, 1, 1))  # / mean 3: 1.33, 0.67
    pruned = channel_prune(model, 0.5, torch.randn(1, 1, 3, 3))  # sums 1.83 vs 2.17: channel 0 goes
    assert pruned.p.weight.flatten().tolist() == [3.0]
    assert pruned.q.weight.flatten().tolist() == [2.0]
    assert torch.equal(pruned.out.weight, model.out.weight[:, [1]])


# ---------------------------------------------------------------------------------------------
# rewiring: removing channels that are exactly zero leaves the output unchanged
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, size", [(ConcatNet, 8), (resnet18, 32), (mobilenet_v2, 32)],
                         ids=["concat", "resnet18", "mobilenet_v2"])
def test_pruning_zero_channels_keeps_output(make, size):
    model = randomize_bn(make()).double().eval()
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    removed = zero_even_channels(model, x)
    pruned = channel_prune(model, 0.5, x)
    assert out_channels(pruned.prune_report) >= removed > 0
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-9, atol=1e-10)


def test_concat_and_depthwise_stay_consistent():
    model = ConcatNet().eval()
    pruned = channel_prune(model, 0.5, torch.randn(1, 3, 8, 8))
    layers = pruned.prune_report.layers
    # a, b and c are one group through the concat + add: 16 channels, 8 kept, split over a and b
    assert layers["a.0"].out_after + layers["b.0"].out_after == layers["c"].out_after == 8
    assert pruned.dw[0].groups == pruned.dw[0].in_channels == pruned.dw[0].out_channels == 8
    assert pruned.head.in_features == 8 * 4  # each channel was a block of 2×2 features
    assert pruned.stem[0].out_channels == pruned.a[0].in_channels == 4


def test_bn_running_stats_follow_the_kept_channels():
    model = randomize_bn(resnet18()).eval()
    pruned = channel_prune(model, 0.5, torch.randn(1, 3, 32, 32))
    report = pruned.prune_report
    for name in ("bn1", "layer1.0.bn1", "layer2.0.downsample.1", "layer4.1.bn2"):
        kept = report.layers[name].kept
        before, after = model.get_submodule(name), pruned.get_submodule(name)
        assert len(kept) == after.num_features < before.num_features
        for attr in ("running_mean", "running_var", "weight", "bias"):
            assert torch.equal(getattr(after, attr), getattr(before, attr)[kept])
    # residual stream: the stem and every block's second conv keep the same channels
    stream = ("conv1", "layer1.0.conv2", "layer1.1.conv2")
    assert all(report.layers[n].kept == report.layers["conv1"].kept for n in stream)
    assert report.layers["layer2.0.downsample.0"].kept == report.layers["layer2.1.conv2"].kept


# ---------------------------------------------------------------------------------------------
# torchvision models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, params_range, flops_range", [
    # every hidden channel count halves: conv FLOPs / params ~1/4, the stem and the classifier 1/2
    (resnet18, (0.22, 0.32), (0.22, 0.32)),
    (mobilenet_v2, (0.30, 0.40), (0.24, 0.34)),  # its 1280 → 1000 classifier (1/2) is 37 % of the params
], ids=["resnet18", "mobilenet_v2"])
def test_torchvision_models_shrink(make, params_range, flops_range):
    model = make().eval()
    x = torch.randn(1, 3, 64, 64)
    state = copy.deepcopy(model.state_dict())
    pruned = channel_prune(model, 0.5, x)
    r = pruned.prune_report
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape == (1, 1000)
    assert r.params_after == count_params(pruned) and r.params_before == count_params(model)
    assert r.flops_after == count_flops(pruned, x)
    assert params_range[0] < r.params_after / r.params_before < params_range[1]
    assert flops_range[0] < r.flops_after / r.flops_before < flops_range[1]
    last = next(n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear))
    assert list(r.unpruned) == [last]  # only the classifier, whose outputs are the model's
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the input is untouched
    assert type(pruned) is type(model) and not pruned.training


def test_fx_and_dynamic_tracers_agree_on_resnet18():
    model = resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    fx = channel_prune(model, 0.3, x, tracer="fx").prune_report
    dyn = channel_prune(model, 0.3, x, tracer="dynamic").prune_report
    assert (fx.tracer, dyn.tracer) == ("fx", "dynamic")
    assert fx.layers == dyn.layers and fx.unpruned == dyn.unpruned


# ---------------------------------------------------------------------------------------------
# ratios, rounding, what is left unpruned
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.05])  # 0.05 of 8 or 16 channels rounds to no channel
def test_ratio_that_removes_nothing_gives_identical_model(ratio):
    model = randomize_bn(ConcatNet()).eval()
    x = torch.randn(2, 3, 8, 8)
    pruned = channel_prune(model, ratio, x)
    assert pruned is not model
    assert all(torch.equal(a, b) for a, b in zip(pruned.state_dict().values(), model.state_dict().values(),
                                                    strict=True))
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))
    r = pruned.prune_report
    assert (r.params_after, r.flops_after) == (r.params_before, r.flops_before)
    assert r.unpruned["head"] == "its channels are outputs of the model"
    assert "removes no channel" in r.unpruned["stem.0"]


def test_round_to_multiple():
    pruned = channel_prune(resnet18().eval(), 0.3, torch.randn(1, 3, 32, 32), round_to=8)
    layers = pruned.prune_report.layers
    assert layers["conv1"].out_after == 48  # 64 - floor(19.2) = 45, rounded up to 48
    assert layers["layer4.0.conv1"].out_after == 360  # 512 - 153 = 359 → 360
    assert all(c.out_after % 8 == 0 for n, c in layers.items() if n != "fc")


def test_keeps_at_least_one_channel_per_layer():
    model = nn.Sequential(nn.Conv2d(3, 1, 3), nn.ReLU(), nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    pruned = channel_prune(model, 0.9, torch.randn(1, 3, 5, 5))
    assert pruned[0].out_channels == 1 and pruned[2].out_channels == 1 and pruned[4].in_features == 1


def test_fallback_tracer_for_data_dependent_control_flow():
    model = randomize_bn(Branchy()).double().eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    zero_even_channels(model, x)
    pruned = channel_prune(model, 0.5, x)
    assert pruned.prune_report.tracer == "dynamic"
    assert pruned.body[0].out_channels == pruned.skip.out_channels == 4  # tied through the add
    assert pruned.head.in_features == 4 * 16
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-9, atol=1e-10)


class Untraceable(nn.Module):
    """Channels that pass through an op the analysis does not know, a shared conv, a grouped
    conv, and a channel count hard-coded in a view: all of these are left as they are."""

    def __init__(self) -> None:
        super().__init__()
        self.rolled = nn.Conv2d(3, 8, 1)
        self.shared = nn.Conv2d(8, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2)
        self.viewed = nn.Conv2d(8, 8, 1)
        self.free = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = torch.roll(self.rolled(x), 1, dims=1)
        y = self.shared(self.shared(y))
        y = self.viewed(self.grouped(y))
        y = y.view(y.shape[0], 8, -1).mean(2).view(-1, 8, 1, 1)
        return self.head(self.free(y).flatten(1))


def test_layers_the_tracer_cannot_follow_are_left_unpruned_and_reported():
    model = Untraceable().eval()
    x = torch.randn(1, 3, 4, 4)
    pruned = channel_prune(model, 0.5, x)
    why = pruned.prune_report.unpruned
    assert "`roll`" in why["rolled"]
    assert why["shared"] == "module `shared` is called 2 times (shared weights)"
    assert why["grouped"].startswith("grouped convolution (groups=2)")
    assert "`view`" in why["viewed"]
    assert pruned.free.out_channels == 4 and pruned.head.in_features == 4  # the rest is still pruned
    kept_whole = ("rolled", "shared", "grouped", "viewed")
    assert [pruned.get_submodule(n).out_channels for n in kept_whole] == [8] * 4
    assert pruned(x).shape == (1, 3)


def test_exclude_keeps_a_layer():
    pruned = channel_prune(ConcatNet().eval(), 0.5, torch.randn(1, 3, 8, 8), exclude=["stem.0"])
    assert pruned.stem[0].out_channels == 8
    assert pruned.prune_report.unpruned["stem.0"] == "excluded by the caller"
    assert pruned.c.out_channels == 8


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), "0.5", True, None])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio must be a number in \\[0, 1\\)"):
        channel_prune(_ranking_model(), ratio, torch.randn(1, 1, 4, 4))


@pytest.mark.parametrize("kwargs, match", [
    ({"criterion": "l3"}, "criterion must be one of"),
    ({"criterion": "taylor"}, "needs loss_fn and data"),
    ({"round_to": 0}, "round_to must be a positive int"),
    ({"exclude": ["nope"]}, "exclude: 'nope' is not the name of a conv or linear module"),
    ({"tracer": "jit"}, "tracer must be"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        channel_prune(_ranking_model(), 0.5, torch.randn(1, 1, 4, 4), **kwargs)


@pytest.mark.parametrize("model", [nn.Sequential(), nn.Sequential(nn.ReLU(), nn.Flatten())],
                         ids=["empty", "no-layers"])
def test_model_without_layers(model):
    with pytest.raises(ValueError, match="model has no Conv1d/2d/3d or Linear layer"):
        channel_prune(model, 0.5, torch.randn(1, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(bad):
    model = _ranking_model()
    with torch.no_grad():
        model[2].weight[0, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite values in '2\.weight'"):
        channel_prune(model, 0.5, torch.randn(1, 1, 4, 4))


# ---------------------------------------------------------------------------------------------
# Taylor importance and the real digits data
# ---------------------------------------------------------------------------------------------


def cross_entropy(*args):
    """Cross-entropy as ``loss(model, x, y)`` or ``loss(logits, y)``."""
    if len(args) == 3:
        model, x, y = args
        return F.cross_entropy(model(x), y)
    return F.cross_entropy(*args)


def test_taylor_removes_zero_channels_first():
    """|w · ∂L/∂w| is zero exactly where the weights are, so Taylor pruning removes the zeroed
    channels and the output does not change."""
    model = randomize_bn(SmallCNN()).double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    zero_even_channels(model, x)
    # importance() scores in eval mode, where a ReLU channel that no training example activates also
    # scores exactly 0 (correctly: removing it changes nothing on that data); shift the live channels
    # up so that only the zeroed ones tie at 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias[1::2] += 1.0
    batches = [(xb.double(), yb) for xb, yb in train_loader(batch_size=64)]
    # a hidden unit of the classifier that no training example activates also scores exactly 0:
    # a tie with the zeroed units, so that layer keeps its (zeroed) channels here
    pruned = channel_prune(model, 0.5, x, criterion="taylor", loss_fn=cross_entropy, data=batches,
                           exclude=["classifier.0"])
    assert pruned.prune_report.criterion == "taylor"
    assert [pruned.features[i].out_channels for i in (0, 3, 7)] == [16, 32, 32]
    assert all(k % 2 == 1 for i in (0, 3, 7) for k in pruned.prune_report.layers[f"features.{i}"].kept)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("criterion", ["l1", "taylor"])
def test_digits_prune_half_then_fine_tune(criterion):
    dense = trained_cnn()
    dense_acc = accuracy(dense)
    x = torch.zeros(1, 1, 8, 8)
    pruned = channel_prune(dense, 0.5, x, criterion=criterion, loss_fn=cross_entropy, data=train_loader())
    r = pruned.prune_report
    # conv → conv: both sides of the middle convs halve, so their FLOPs drop 4×; measured 0.253
    assert r.flops_after / r.flops_before <= 0.3
    assert r.params_after / r.params_before <= 0.3
    training.train(pruned, train_loader(seed=1), epochs=2, lr=0.02)
    tuned_acc = accuracy(pruned)
    assert tuned_acc >= dense_acc - 2.0, (criterion, dense_acc, tuned_acc)
    assert math.isclose(count_flops(pruned, x) / count_flops(dense, x), r.flops_after / r.flops_before)


@pytest.mark.parametrize("name", ["MobileNetV1", "MobileNetV2", "SmallResNet"])
def test_project_models_shrink_and_still_fuse(name):
    """effdl's own architectures prune like torchvision's, and the pruned MobileNets still fuse
    every depthwise-separable pair into DWSeparableConv2d."""
    from effdl import fuse_dwsep_, models
    from effdl.nn import DWSeparableConv2d

    kwargs = {"num_classes": 10, "in_channels": 1} | ({} if name == "SmallResNet" else {"input_size": 8})
    model = getattr(models, name)(**kwargs).eval()
    x = torch.randn(2, 1, 8, 8)
    pruned = channel_prune(model, 0.5, x)
    assert pruned(x).shape == (2, 10)
    assert models.count_flops(pruned, x) < 0.3 * models.count_flops(model, x)
    depthwise = sum(isinstance(m, nn.Conv2d) and m.groups > 1 for m in pruned.modules())
    fused = fuse_dwsep_(pruned, verbose=False)
    assert sum(isinstance(m, DWSeparableConv2d) for m in fused.modules()) == depthwise
