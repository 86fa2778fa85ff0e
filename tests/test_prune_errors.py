"""Every bad input to the pruning entry points is a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effdl.prune import magnitude_prune, nm_prune, prune


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), float("inf"), "0.5", None, True])
def test_sparsity_outside_0_1(sparsity):
    with pytest.raises(ValueError, match="sparsity must be"):
        magnitude_prune(mlp(), sparsity)


@pytest.mark.parametrize("model", [nn.Sequential(), nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4), nn.Embedding(3, 4)),
                                   nn.Sequential(nn.ConvTranspose2d(2, 2, 3))])
def test_no_prunable_layer(model):
    with pytest.raises(ValueError, match="no prunable layer"):
        magnitude_prune(model, 0.5)
    with pytest.raises(ValueError, match="no prunable layer"):
        nm_prune(model)


def test_everything_excluded():
    with pytest.raises(ValueError, match="every prunable layer is excluded"):
        magnitude_prune(mlp(), 0.5, exclude=["2"])  # the others are first/last
    with pytest.raises(ValueError, match="every prunable layer is excluded"):
        magnitude_prune(mlp(), 0.5, exclude=lambda module, name: True, keep_first_last=False)


def test_exclude_of_the_wrong_type():
    with pytest.raises(TypeError, match="exclude must be"):
        magnitude_prune(mlp(), 0.5, exclude=[0, 2])


def test_not_a_module():
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        magnitude_prune({"weight": torch.ones(2, 2)}, 0.5)


def test_nan_weight():
    model = mlp()
    with torch.no_grad():
        model[2].weight[0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"'2\.weight' contains NaN"):
        magnitude_prune(model, 0.5)
    with pytest.raises(ValueError, match=r"'2\.weight' contains NaN"):
        nm_prune(model)


def test_nan_importance():
    data = [(torch.full((2, 8), float("nan")), torch.tensor([0, 1]))]
    with pytest.raises(ValueError, match=r"taylor score .* contains NaN"):
        prune(mlp(), 0.5, criterion="taylor", data=data)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"criterion": "l1"}, ValueError, "criterion must be one of"),
        ({"criterion": "gradient"}, ValueError, "needs data"),
        ({"criterion": "taylor", "loss_fn": nn.CrossEntropyLoss()}, ValueError, "needs data"),
        ({"scope": "model"}, ValueError, "scope must be one of"),
    ],
)
def test_bad_prune_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        prune(mlp(), 0.5, **kwargs)


def test_a_failed_call_leaves_the_model_unpruned():
    model = mlp()
    with pytest.raises(ValueError):
        prune(model, 0.5, criterion="gradient")
    assert not any(hasattr(m, "weight_mask") for m in model.modules())
