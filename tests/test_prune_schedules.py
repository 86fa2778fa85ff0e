"""Pruning schedules: geometric iterative rounds, the cubic gradual schedule, lottery tickets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from effdl.prune import GradualPruner, LotteryTicket, geometric_sparsities, get_mask, iterative_prune


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))


MIDDLE = (3, 5)  # the layers pruned by default (the first and last stay dense)
N_MIDDLE = 32 * 32 + 32 * 24


def sgd_step(model, optimizer, gen):
    optimizer.zero_grad()
    x, y = torch.randn(16, 16, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def zeros(model) -> int:
    return sum(int((model[i].weight == 0).sum()) for i in MIDDLE)


# ------------------------------------------------------------------ iterative


def test_geometric_sparsities_by_hand():
    # each round removes half of what is left: 1 - 0.5, 1 - 0.25, 1 - 0.125
    assert geometric_sparsities(0.875, 3) == pytest.approx([0.5, 0.75, 0.875])
    assert geometric_sparsities(0.8, 1) == [0.8]
    assert geometric_sparsities(0.9, 4)[-1] == 0.9


def test_iterative_prune_rounds():
    model = mlp()
    calls = []

    def fine_tune(m, round_index):
        assert m is model
        calls.append((round_index, zeros(model)))
        sgd_step(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.Generator().manual_seed(round_index))

    reports = iterative_prune(model, 0.875, 3, fine_tune)
    assert [i for i, _ in calls] == [0, 1, 2]
    expected = [math.floor(s * N_MIDDLE + 0.5) for s in (0.5, 0.75, 0.875)]
    assert [z for _, z in calls] == expected
    assert [r.sparsity for r in reports] == pytest.approx([e / N_MIDDLE for e in expected])
    assert zeros(model) == expected[-1]


def test_iterative_prune_bad_arguments():
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        iterative_prune(mlp(), 0.5, 0, lambda m, i: None)
    with pytest.raises(ValueError, match="fine_tune must be a callable"):
        iterative_prune(mlp(), 0.5, 2, None)
    with pytest.raises(ValueError, match="final_sparsity must be in"):
        iterative_prune(mlp(), 1.0, 2, lambda m, i: None)


# ------------------------------------------------------------------ gradual (Zhu & Gupta 2017)


def test_cubic_schedule_by_hand():
    p = GradualPruner(mlp(), final_sparsity=0.8, start_step=0, end_step=100, frequency=10)
    assert p.sparsity_at(0) == 0.0
    assert p.sparsity_at(10) == pytest.approx(0.8 - 0.8 * 0.9**3)  # 0.2168
    assert p.sparsity_at(15) == pytest.approx(0.2168)  # held until the next update
    assert p.sparsity_at(50) == pytest.approx(0.7)  # 0.8 - 0.8 * 0.5^3
    assert p.sparsity_at(90) == pytest.approx(0.7992)  # 0.8 - 0.8 * 0.1^3
    assert p.sparsity_at(100) == 0.8 and p.sparsity_at(1000) == 0.8
    assert p.cubic(25) == pytest.approx(0.8 - 0.8 * 0.75**3)


def test_cubic_schedule_with_initial_sparsity_and_late_start():
    p = GradualPruner(mlp(), 0.9, start_step=20, end_step=60, frequency=8, initial_sparsity=0.5)
    assert p.sparsity_at(19) == 0.0  # nothing before start_step
    assert p.sparsity_at(20) == 0.5
    assert p.sparsity_at(40) == pytest.approx(0.9 - 0.4 * 0.6**3)  # last update at 36: (36-20)/40 = 0.4
    assert p.sparsity_at(60) == 0.9


def test_update_steps_include_an_unaligned_end_step():
    p = GradualPruner(mlp(), 0.5, start_step=3, end_step=28, frequency=10)
    assert [t for t in range(40) if p.is_update_step(t)] == [3, 13, 23, 28]


def test_gradual_pruner_reaches_the_final_sparsity_exactly():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    pruner = GradualPruner(model, 0.8, start_step=2, end_step=20, frequency=3)
    gen = torch.Generator().manual_seed(0)
    seen, previous_mask = [], None
    for t in range(25):
        sgd_step(model, optimizer, gen)
        target = pruner.step()
        assert target == pruner.sparsity_at(t)
        assert zeros(model) == math.floor(target * N_MIDDLE + 0.5)
        seen.append(zeros(model))
        if previous_mask is not None:  # masks only shrink
            assert bool((get_mask(model[3]) <= previous_mask).all())
        if get_mask(model[3]) is not None:
            previous_mask = get_mask(model[3]).clone()
    assert pruner.done and seen == sorted(seen)
    assert zeros(model) == math.floor(0.8 * N_MIDDLE + 0.5)
    assert int((model[0].weight == 0).sum()) == 0  # first layer kept dense


def test_gradual_pruner_resumes_from_its_state():
    a = GradualPruner(mlp(), 0.5, 0, 10, 2)
    for _ in range(7):
        a.step()
    b = GradualPruner(mlp(), 0.5, 0, 10, 2)
    b.load_state_dict(a.state_dict())
    assert b.current_step == 7 and not b.done


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"final_sparsity": 1.0}, "final_sparsity must be in"),
        ({"initial_sparsity": 0.9}, "must not exceed final_sparsity"),
        ({"initial_sparsity": -0.1}, "initial_sparsity must be in"),
        ({"start_step": -1}, "start_step must be an int >= 0"),
        ({"end_step": 5}, "end_step must be an int >= 6"),
        ({"frequency": 0}, "frequency must be an int >= 1"),
        ({"criterion": "hessian"}, "criterion must be one of"),
        ({"criterion": "taylor"}, "needs data"),
        ({"scope": "block"}, "scope must be one of"),
    ],
)
def test_gradual_pruner_bad_arguments(kwargs, message):
    args = {"final_sparsity": 0.8, "start_step": 5, "end_step": 50, "frequency": 5} | kwargs
    with pytest.raises(ValueError, match=message):
        GradualPruner(mlp(), **args)


# ------------------------------------------------------------------ lottery tickets


def train(model, steps, ticket=None, seed=0):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        sgd_step(model, optimizer, gen)
        if ticket is not None:
            ticket.step()


def test_lottery_ticket_rewinds_survivors_to_init():
    model = mlp()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    ticket = LotteryTicket(model)
    train(model, 10, ticket)
    trained = {i: model[i].weight.detach().clone() for i in MIDDLE}
    ticket.prune(0.5)
    # pruned by the magnitude of the trained weights, one global threshold
    kept = torch.cat([trained[i].abs().flatten()[get_mask(model[i]).flatten()] for i in MIDDLE])
    dropped = torch.cat([trained[i].abs().flatten()[~get_mask(model[i]).flatten()] for i in MIDDLE])
    assert kept.min() >= dropped.max()
    ticket.rewind()
    for i in MIDDLE:
        mask = get_mask(model[i])
        assert torch.equal(model[i].weight[mask], init[f"{i}.weight"][mask])
        assert bool((model[i].weight[~mask] == 0).all())
    for key in ("0.weight", "0.bias", "1.running_mean", "1.num_batches_tracked", "7.weight"):
        assert torch.equal(model.state_dict()[key], init[key])


def test_iterative_lottery_ticket_keeps_earlier_rounds_pruned():
    model = mlp()
    ticket = LotteryTicket(model)
    masks = []
    for round_index, sparsity in enumerate((0.5, 0.75, 0.875)):
        train(model, 5, ticket, seed=round_index)
        ticket.prune(sparsity)
        ticket.rewind()
        masks.append(get_mask(model[3]).clone())
        assert zeros(model) == math.floor(sparsity * N_MIDDLE + 0.5)
    assert bool((masks[1] <= masks[0]).all()) and bool((masks[2] <= masks[1]).all())
    assert len(ticket.rounds) == 3


def test_late_rewinding_records_after_k_steps():
    model = mlp()
    ticket = LotteryTicket(model, rewind_iteration=3)
    assert ticket.recorded is None
    with pytest.raises(RuntimeError, match="nothing recorded yet"):
        ticket.rewind()
    train(model, 3, ticket)
    at_three = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, 4, ticket, seed=1)
    assert ticket.iteration == 7
    ticket.prune(0.6)
    ticket.rewind()
    mask = get_mask(model[5])
    assert torch.equal(model[5].weight[mask], at_three["5.weight"][mask])
    assert torch.equal(model[1].running_var, at_three["1.running_var"])


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_lottery_ticket_bad_rewind_iteration(bad):
    with pytest.raises(ValueError, match="rewind_iteration must be an int >= 0"):
        LotteryTicket(mlp(), rewind_iteration=bad)


def test_lottery_ticket_bad_sparsity():
    with pytest.raises(ValueError, match="sparsity must be in"):
        LotteryTicket(mlp()).prune(1.2)
