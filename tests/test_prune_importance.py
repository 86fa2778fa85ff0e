"""effdl.prune.importance: magnitude, gradient and Taylor scores against hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effdl.prune import importance


def one_linear(weight, bias=False) -> nn.Sequential:
    weight = torch.tensor(weight, dtype=torch.float32)
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias:
            lin.bias.zero_()
    return nn.Sequential(lin)


# y = w·x with w = [2, -1]; mse loss (y - t)^2
# batch 1: x = [1, 3], t = 0.5: y = -1, dL/dy = 2(y - t) = -3, dL/dw = [-3, -9]
# batch 2: x = [0, 1], t = 0:   y = -1, dL/dy = -2,             dL/dw = [0, -2]
BATCHES = [
    (torch.tensor([[1.0, 3.0]]), torch.tensor([[0.5]])),
    (torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0]])),
]


def test_magnitude_is_abs_weight():
    model = one_linear([[2.0, -1.0, 0.0], [-0.5, 3.0, -4.0]])
    scores = importance(model)
    assert list(scores) == ["0.weight"]
    torch.testing.assert_close(scores["0.weight"], torch.tensor([[2.0, 1.0, 0.0], [0.5, 3.0, 4.0]]))


@pytest.mark.parametrize(
    ("criterion", "batches", "expected"),
    [
        ("gradient", 1, [3.0, 9.0]),
        ("taylor", 1, [6.0, 9.0]),  # |w * g| = |[2 * -3, -1 * -9]|
        ("gradient", 2, [1.5, 5.5]),  # mean of |g| per batch: ([3, 9] + [0, 2]) / 2
        ("taylor", 2, [3.0, 5.5]),  # ([6, 9] + [0, 2]) / 2
        ("taylor", 8, [3.0, 5.5]),  # data holds only two batches
    ],
)
def test_gradient_and_taylor_by_hand(criterion, batches, expected):
    model = one_linear([[2.0, -1.0]])
    scores = importance(model, criterion, loss_fn=nn.MSELoss(), data=BATCHES, batches=batches)
    torch.testing.assert_close(scores["0.weight"], torch.tensor([expected]))


def test_default_loss_is_cross_entropy():
    # w = 0: logits 0, softmax [0.5, 0.5]; target 0: dL/dz = [-0.5, 0.5]; dL/dW = dz^T x with x = [1, 2]
    model = one_linear([[0.0, 0.0], [0.0, 0.0]])
    data = [(torch.tensor([[1.0, 2.0]]), torch.tensor([0]))]
    scores = importance(model, "gradient", data=data)
    torch.testing.assert_close(scores["0.weight"], torch.tensor([[0.5, 1.0], [0.5, 1.0]]))
    assert torch.equal(importance(model, "taylor", data=data)["0.weight"], torch.zeros(2, 2))


def test_keys_are_parameter_names_of_conv_and_linear_only():
    holder = nn.ModuleDict({
        "net": nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)),
        "emb": nn.Embedding(5, 3),
        "c1": nn.Conv1d(2, 2, 3),
        "c3": nn.Conv3d(2, 2, 1),
        "up": nn.ConvTranspose2d(2, 2, 3),
    })
    scores = importance(holder)
    assert list(scores) == ["net.0.weight", "net.4.weight", "c1.weight", "c3.weight"]
    for name, score in scores.items():
        assert score.shape == holder.get_parameter(name).shape


def test_conv_gradient_scores_match_autograd_and_leave_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.Flatten(), nn.Linear(12, 2))
    model[0].weight.requires_grad_(False)  # frozen layers are scored too
    model.train()
    data = [(torch.randn(4, 1, 4, 4), torch.randint(0, 2, (4,))) for _ in range(3)]
    stats = model[1].running_mean.clone()
    model[4].weight.grad = torch.full_like(model[4].weight, 7.0)
    scores = importance(model, "taylor", data=data, batches=3)
    # state untouched
    assert model.training and not model[0].weight.requires_grad
    assert torch.equal(model[1].running_mean, stats)
    assert torch.equal(model[4].weight.grad, torch.full_like(model[4].weight, 7.0))
    # reference: per-batch |w * dL/dw| in eval mode, averaged
    ref = torch.zeros_like(model[4].weight)
    model.eval()
    for x, y in data:
        g = torch.autograd.grad(F.cross_entropy(model(x), y), model[4].weight)[0]
        ref += (g * model[4].weight).abs().detach()
    torch.testing.assert_close(scores["4.weight"], ref / 3)
    assert scores["0.weight"].abs().sum() > 0


def test_half_precision_scores_accumulate_in_float32():
    model = one_linear([[2.0, -1.0]]).to(torch.bfloat16)
    data = [(x.bfloat16(), t.bfloat16()) for x, t in BATCHES]
    scores = importance(model, "taylor", loss_fn=nn.MSELoss(), data=data, batches=2)
    assert scores["0.weight"].dtype == torch.float32
    assert importance(model)["0.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"criterion": "random"}, "criterion must be one of"),
        ({"criterion": "gradient"}, "needs data"),
        ({"criterion": "taylor", "data": BATCHES, "batches": 0}, "batches must be a positive int"),
        ({"criterion": "taylor", "data": []}, "no batch"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        importance(one_linear([[1.0, 2.0]]), loss_fn=nn.MSELoss(), **kwargs)


def test_no_prunable_layer():
    with pytest.raises(ValueError, match="no prunable layer"):
        importance(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_nan_weight_and_nan_score_are_errors():
    with pytest.raises(ValueError, match="NaN"):
        importance(one_linear([[1.0, float("nan")]]))
    data = [(torch.tensor([[1.0, float("nan")]]), torch.tensor([[0.0]]))]
    with pytest.raises(ValueError, match=r"gradient score of '0\.weight' contains NaN"):
        importance(one_linear([[1.0, 2.0]]), "gradient", loss_fn=nn.MSELoss(), data=data)
