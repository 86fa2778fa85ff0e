"""effdl.prune.prune / magnitude_prune: thresholds, exact sparsity, masks kept through
optimizer steps and state_dict round trips, make_permanent."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

import effdl
from effdl import prune
from effdl.prune import get_mask, magnitude_prune, make_permanent, restore_masks


def two_linears(a, b) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(len(a), 1, bias=False), nn.Linear(1, len(b), bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([a]))
        model[1].weight.copy_(torch.tensor([b]).T)
    return model


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 24),
                         nn.ReLU(), nn.Linear(24, 4))


def zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def test_global_threshold_by_hand():
    model = two_linears([1.0, -2.0, 3.0, 4.0], [0.5, 5.0, -6.0, 7.0])
    report = magnitude_prune(model, 0.5, scope="global", keep_first_last=False, verbose=False)
    # one threshold: the 4 smallest |w| of all 8 are 0.5, 1, 2, 3
    assert model[0].weight.tolist() == [[0.0, 0.0, 0.0, 4.0]]
    assert model[1].weight.flatten().tolist() == [0.0, 5.0, -6.0, 7.0]
    assert report.pruned == {"0": (1, 4), "1": (3, 4)}
    assert report.sparsity == 0.5


def test_layer_threshold_by_hand():
    model = two_linears([1.0, -2.0, 3.0, 4.0], [0.5, 5.0, -6.0, 7.0])
    magnitude_prune(model, 0.5, scope="layer", keep_first_last=False, verbose=False)
    assert model[0].weight.tolist() == [[0.0, 0.0, 3.0, 4.0]]
    assert model[1].weight.flatten().tolist() == [0.0, 0.0, -6.0, 7.0]
    assert get_mask(model[0]).tolist() == [[False, False, True, True]]


def test_ties_prune_the_first_positions():
    model = two_linears([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    magnitude_prune(model, 0.375, keep_first_last=False, verbose=False)  # 3 of 8
    assert model[0].weight.tolist() == [[0.0, 0.0, 0.0, 1.0]]
    assert model[1].weight.flatten().tolist() == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.29, 0.5, 0.8, 0.97])
def test_exact_sparsity(scope, sparsity):
    model = mlp()
    with torch.no_grad():  # nonzero, with many ties: the count must still be exact
        for p in model.parameters():
            p.copy_(torch.randint(1, 4, p.shape) * (torch.randint(0, 2, p.shape) * 2 - 1))
    report = magnitude_prune(model, sparsity, scope=scope, verbose=False)
    middle = [model[2], model[4]]
    total = sum(m.weight.numel() for m in middle)
    if scope == "global":
        assert sum(zeros(m.weight) for m in middle) == math.floor(sparsity * total + 0.5)
    else:
        for m in middle:
            assert zeros(m.weight) == math.floor(sparsity * m.weight.numel() + 0.5)
    assert zeros(model[0].weight) == 0 and zeros(model[6].weight) == 0  # kept dense
    assert set(report.pruned) == {"2", "4"}
    assert [name for name, _ in report.skipped] == ["0", "6"]


def test_never_prunes_a_whole_layer():
    model = two_linears([1.0, 2.0], [3.0, 4.0])
    magnitude_prune(model, 0.99, scope="layer", keep_first_last=False, verbose=False)
    assert zeros(model[0].weight) == 1 and zeros(model[1].weight) == 1


@pytest.mark.parametrize("exclude", [["2"], ["2.weight"], "2", lambda module, name: name == "2"])
def test_exclude_by_name_or_predicate(exclude):
    model = mlp()
    report = magnitude_prune(model, 0.5, exclude=exclude, keep_first_last=False, verbose=False)
    assert zeros(model[2].weight) == 0 and get_mask(model[2]) is None
    assert set(report.pruned) == {"0", "4", "6"}
    assert ("2", "excluded") in report.skipped


def test_repruning_only_adds_zeros():
    model = mlp()
    magnitude_prune(model, 0.5, scope="layer", verbose=False)
    old = get_mask(model[2]).clone()
    # gradient scores are large on some pruned weights; they must stay pruned anyway
    data = [(torch.randn(8, 16), torch.randint(0, 4, (8,)))]
    prune.prune(model, 0.7, criterion="gradient", scope="layer", data=data, verbose=False)
    new = get_mask(model[2])
    assert bool((new <= old).all())
    assert zeros(model[2].weight) == math.floor(0.7 * 1024 + 0.5)
    prune.prune(model, 0.3, scope="layer", verbose=False)  # lower target: nothing changes
    assert torch.equal(get_mask(model[2]), new)


def test_weight_stays_a_plain_parameter():
    model = mlp()
    names = [name for name, _ in model.named_parameters()]
    magnitude_prune(model, 0.5, verbose=False)
    assert [name for name, _ in model.named_parameters()] == names
    assert type(model[2].weight) is nn.Parameter
    assert get_mask(model[2]).dtype == torch.bool
    assert "2.weight_mask" in model.state_dict() and "2.weight_orig" not in model.state_dict()


def train_steps(model, optimizer, steps=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 16, generator=gen)
        y = torch.randint(0, 4, (16,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


OPTIMIZERS = {
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd-nesterov-foreach": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, foreach=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adam-wd-fused": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2, fused=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_pruned_weights_stay_zero_through_optimizer_steps(make_optimizer):
    model = mlp()
    optimizer = make_optimizer(model.parameters())
    train_steps(model, optimizer, seed=1)  # momentum / Adam moments now nonzero everywhere
    magnitude_prune(model, 0.6, verbose=False)
    masks = {i: get_mask(model[i]).clone() for i in (2, 4)}
    before = {i: model[i].weight.detach().clone() for i in (2, 4)}
    # runs after the global hooks: sees the gradient the optimizer will use
    seen = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(model[2].weight.grad[~masks[2]].clone()))
    train_steps(model, optimizer, seed=2)
    for i, mask in masks.items():
        assert torch.equal(model[i].weight[~mask], torch.zeros(int((~mask).sum())))
        assert not torch.equal(model[i].weight[mask], before[i][mask])  # kept weights do train
        assert torch.equal(get_mask(model[i]), mask)
    # the gradient was masked before each step ...
    assert len(seen) == 5 and all(bool((g == 0).all()) for g in seen)
    # ... yet the state from before pruning still pushes the pruned weights: only the
    # re-application after the step keeps them at zero
    state = optimizer.state[model[2].weight]
    moment = state.get("momentum_buffer", state.get("exp_avg"))
    assert bool((moment[~masks[2]] != 0).any())


def test_optimizer_of_another_model_leaves_masked_weights_alone():
    pruned, other = mlp(0), mlp(1)
    magnitude_prune(pruned, 0.5, verbose=False)
    version = pruned[2].weight._version
    train_steps(other, torch.optim.SGD(other.parameters(), lr=0.1), steps=2)
    assert pruned[2].weight._version == version


def test_deepcopy_keeps_masks_enforced():
    model = mlp()
    magnitude_prune(model, 0.6, verbose=False)
    clone = copy.deepcopy(model)
    mask = get_mask(clone[2]).clone()
    train_steps(clone, torch.optim.Adam(clone.parameters(), lr=1e-2))
    assert bool((clone[2].weight[~mask] == 0).all())


def test_state_dict_round_trip_into_a_pruned_model():
    source = mlp(0)
    magnitude_prune(source, 0.7, verbose=False)
    train_steps(source, torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9))
    state = source.state_dict()
    target = mlp(1)
    magnitude_prune(target, 0.3, scope="layer", verbose=False)  # other masks, same structure
    target.load_state_dict(state)
    for i in (2, 4):
        assert torch.equal(get_mask(target[i]), get_mask(source[i]))
        assert torch.equal(target[i].weight, source[i].weight)
    train_steps(target, torch.optim.AdamW(target.parameters(), lr=1e-2))
    assert bool((target[2].weight[~get_mask(source[2])] == 0).all())


def test_checkpoint_file_and_pickled_model():
    source = mlp(0)
    magnitude_prune(source, 0.7, verbose=False)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    fresh = restore_masks(mlp(1), torch.load(buffer, weights_only=True))
    assert torch.equal(fresh[2].weight, source[2].weight)
    # the whole model pickled: masks and their enforcement come back with it
    buffer = io.BytesIO()
    torch.save(source, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    mask = get_mask(loaded[4])
    assert torch.equal(mask, get_mask(source[4]))
    train_steps(loaded, torch.optim.Adam(loaded.parameters(), lr=1e-2))
    assert bool((loaded[4].weight[~mask] == 0).all())


def test_loading_dense_weights_into_a_pruned_model_reapplies_the_masks():
    model = mlp(0)
    magnitude_prune(model, 0.5, verbose=False)
    dense = mlp(1).state_dict()
    model.load_state_dict(dense, strict=False)  # no masks in it: the model's stay
    mask = get_mask(model[2])
    assert torch.equal(model[2].weight, dense["2.weight"] * mask)


def test_restore_masks_into_a_fresh_model():
    source = mlp(0)
    magnitude_prune(source, 0.7, verbose=False)
    state = source.state_dict()
    fresh = mlp(1)
    with pytest.raises(RuntimeError, match="weight_mask"):
        fresh.load_state_dict(state)  # plain loading refuses the extra mask entries
    assert restore_masks(mlp(1), state) is not None
    fresh = restore_masks(mlp(1), state)
    for i in (2, 4):
        assert torch.equal(get_mask(fresh[i]), get_mask(source[i]))
        assert torch.equal(fresh[i].weight, source[i].weight)
    assert get_mask(fresh[0]) is None
    train_steps(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3))
    assert bool((fresh[4].weight[~get_mask(source[4])] == 0).all())


def test_restore_masks_rejects_a_checkpoint_of_another_model():
    state = mlp(0).state_dict()
    state["9.weight_mask"] = torch.ones(4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="does not have"):
        restore_masks(mlp(), state)
    state = {"2.weight_mask": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="shape"):
        restore_masks(mlp(), state)
    state = {"1.weight_mask": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="not a prunable layer"):
        restore_masks(mlp(), state)


def test_make_permanent_leaves_a_plain_sparse_model():
    model = mlp()
    magnitude_prune(model, 0.6, verbose=False)
    weights = {i: model[i].weight.detach().clone() for i in (2, 4)}
    assert make_permanent(model) is model
    assert set(model.state_dict()) == set(mlp().state_dict())
    for mod in model.modules():
        assert not mod._forward_pre_hooks and not mod._load_state_dict_post_hooks
        assert get_mask(mod) is None
    for i, w in weights.items():
        assert torch.equal(model[i].weight, w) and zeros(w) > 0
    # no mask any more: training is free to move the zeros
    train_steps(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert zeros(model[2].weight) < zeros(weights[2])


def test_pruned_model_converts_with_sparsify_and_quantize_after_make_permanent():
    model = mlp()
    magnitude_prune(model, 0.5, verbose=False)
    make_permanent(model)
    x = torch.randn(5, 16)
    ref = model(x)
    q = effdl.quantize_(copy.deepcopy(model), verbose=False)
    assert sum(type(m).__name__ == "QLinear" for m in q.modules()) == 4
    assert torch.allclose(q(x), ref, atol=0.1)


def test_verbose_prints_a_summary(capsys):
    magnitude_prune(mlp(), 0.5)
    out = capsys.readouterr().out
    assert "effdl.prune.prune[magnitude, global]: pruned 2 layers to 50.00% sparsity, skipped 2" in out
