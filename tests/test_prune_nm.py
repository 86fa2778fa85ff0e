"""effdl.prune.nm_prune: N:M masks along the input dimension, kept in training,
and handed to effdl.sparsify_ unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import effdl
from effdl.nn import SparseLinear
from effdl.prune import get_mask, magnitude_prune, make_permanent, nm_prune
from effdl.prune.nm import as_rows, from_rows


def linear(weight) -> nn.Linear:
    weight = torch.tensor(weight, dtype=torch.float32)
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(weight)
    return lin


def groups_nonzeros(weight: torch.Tensor, m: int) -> torch.Tensor:
    rows = as_rows(weight.detach())
    return (rows != 0).reshape(rows.shape[0], -1, m).sum(-1)


def test_2_4_linear_by_hand():
    model = nn.Sequential(linear([[1.0, -5.0, 3.0, 2.0, 0.125, 0.25, -0.375, 0.5]]))
    report = nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
    assert model[0].weight.tolist() == [[0.0, -5.0, 3.0, 0.0, 0.0, 0.0, -0.375, 0.5]]
    assert report.pruned == {"0": (4, 8)}


def test_ties_keep_the_lower_columns():
    model = nn.Sequential(linear([[2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]]))
    nm_prune(model, 1, 4, keep_first_last=False, verbose=False)
    assert model[0].weight.tolist() == [[2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]


def test_conv_groups_run_along_input_channels_at_each_kernel_position():
    conv = nn.Conv2d(4, 1, (1, 2), bias=False)
    # weight [out=1, in=4, kh=1, kw=2]: channel c holds (c + 1) * [1, -1] at the two positions,
    # except that channel 0 is the largest at the second position
    w = torch.tensor([[1.0, 9.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0]]).reshape(1, 4, 1, 2)
    with torch.no_grad():
        conv.weight.copy_(w)
    nm_prune(nn.Sequential(conv), 2, 4, keep_first_last=False, verbose=False)
    # position 0: channels 2, 3 kept; position 1: channels 0 (9) and 3 (-4) kept
    expected = torch.tensor([[0.0, 9.0], [0.0, 0.0], [3.0, 0.0], [4.0, -4.0]]).reshape(1, 4, 1, 2)
    assert torch.equal(conv.weight.detach(), expected)


@pytest.mark.parametrize("shape", [(3, 8), (2, 8, 3), (2, 8, 3, 2), (2, 8, 1, 2, 3)])
def test_rows_view_round_trips(shape):
    t = torch.randn(shape)
    assert torch.equal(from_rows(as_rows(t), t.shape), t)
    assert as_rows(t).shape[1] == 8


@pytest.mark.parametrize(("n", "m"), [(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (2, 8), (7, 16), (15, 16)])
def test_every_pattern_linear_and_conv(n, m):
    torch.manual_seed(n * 100 + m)
    model = nn.Sequential(nn.Conv1d(16, 32, 3), nn.Conv2d(32, 32, 3), nn.Flatten(), nn.Linear(32, 48))
    report = nm_prune(model, n, m, keep_first_last=False, verbose=False)
    for mod in (model[0], model[1], model[3]):
        assert bool((groups_nonzeros(mod.weight, m) == n).all())  # random weights: exactly n survive
    assert report.sparsity == pytest.approx(1 - n / m)


def test_layers_with_a_bad_input_dimension_are_skipped_and_reported():
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 12), nn.Linear(12, 4), nn.Conv2d(3, 8, 1))
    report = nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
    assert set(report.pruned) == {"0", "2"}
    assert ("1", "input dimension 6 not a multiple of 4") in report.skipped
    assert ("3", "input dimension 3 not a multiple of 4") in report.skipped
    assert get_mask(model[1]) is None and int((model[1].weight == 0).sum()) == 0


def test_no_layer_fits_is_an_error():
    with pytest.raises(ValueError, match="divisible by m=4"):
        nm_prune(nn.Sequential(nn.Linear(6, 6)), 2, 4, keep_first_last=False, verbose=False)


@pytest.mark.parametrize(("n", "m"), [(4, 4), (5, 4), (0, 4), (-1, 4), (2, 17), (16, 16), (2.0, 4)])
def test_bad_pattern(n, m):
    with pytest.raises(ValueError, match="1 <= n < m <= 16"):
        nm_prune(nn.Sequential(nn.Linear(16, 16)), n, m, keep_first_last=False, verbose=False)


def test_bad_criterion_and_missing_data():
    model = nn.Sequential(nn.Linear(16, 16))
    with pytest.raises(ValueError, match="criterion must be one of"):
        nm_prune(model, criterion="l2", keep_first_last=False)
    with pytest.raises(ValueError, match="needs data"):
        nm_prune(model, criterion="taylor", keep_first_last=False)


def test_taylor_criterion_uses_the_data():
    torch.manual_seed(0)
    data = [(torch.randn(16, 16), torch.randint(0, 8, (16,)))]
    a = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    b = copy.deepcopy(a)
    nm_prune(a, 2, 4, keep_first_last=False, verbose=False)
    nm_prune(b, 2, 4, criterion="taylor", data=data, keep_first_last=False, verbose=False)
    for mod in (b[0], b[2]):
        assert bool((groups_nonzeros(mod.weight, 4) == 2).all())
    assert not torch.equal(get_mask(a[0]), get_mask(b[0]))


def test_nm_after_unstructured_keeps_old_zeros():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32))
    magnitude_prune(model, 0.6, verbose=False)
    old = get_mask(model[1]).clone()
    nm_prune(model, 2, 4, verbose=False)
    new = get_mask(model[1])
    assert bool((new <= old).all())
    assert bool((groups_nonzeros(model[1].weight, 4) <= 2).all())


def test_pattern_survives_fine_tuning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    nm_prune(model, 2, 4, verbose=False)
    mask = get_mask(model[2]).clone()
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 16)), torch.randint(0, 4, (8,))).backward()
        optimizer.step()
    assert bool((groups_nonzeros(model[2].weight, 4) == 2).all())
    assert torch.equal((model[2].weight != 0), mask)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8)])
def test_sparsify_keeps_exactly_the_pruned_weights(n, m):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    report = nm_prune(model, n, m, verbose=False)  # the first and last layers stay dense
    make_permanent(model)
    pruned_weights = {name: model.get_submodule(name).weight.detach().clone() for name in report.pruned}
    x = torch.randn(5, 16)
    ref = model(x)
    effdl.sparsify_(model, n, m, filter_fn=lambda mod, name: name in report.pruned, verbose=False)
    for name, weight in pruned_weights.items():
        sparse = model.get_submodule(name)
        assert isinstance(sparse, SparseLinear)
        assert torch.equal(sparse.dense_weight(), weight)
    assert type(model[0]) is nn.Linear and type(model[4]) is nn.Linear
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)


def test_sparsify_of_a_fully_nm_pruned_model_changes_nothing():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
    # a little fine-tuning first: the weights are no longer the magnitude choice of sparsify_
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 16)).square().mean().backward()
        optimizer.step()
    make_permanent(model)
    weights = [model[i].weight.detach().clone() for i in (0, 2)]
    effdl.sparsify_(model, 2, 4, verbose=False)
    for i, w in zip((0, 2), weights, strict=True):
        assert torch.equal(model[i].dense_weight(), w)
