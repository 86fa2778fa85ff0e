"""Pruning a DistributedDataParallel model (2 processes, gloo): every rank prunes the
same weights, even with data-dependent criteria fed different batches per rank,
and the zeros survive DDP training."""

from __future__ import annotations

import ddp as ddp_harness
import pytest
import torch
from torch import nn


def _worker(rank: int) -> None:
    from effdl import prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(rank)  # each rank its own data

    def batch():
        return torch.randn(8, 16, generator=gen), torch.randint(0, 4, (8,), generator=gen)

    def train(steps, after_step=None):
        for _ in range(steps):
            x, y = batch()
            optimizer.zero_grad()
            nn.functional.cross_entropy(ddp(x), y).backward()
            optimizer.step()
            if after_step is not None:
                after_step()

    train(2)
    prune.prune(ddp, 0.4, criterion="taylor", data=[batch() for _ in range(3)], verbose=False)
    train(2)
    prune.nm_prune(ddp, 2, 4, criterion="gradient", data=[batch()], verbose=False)
    pruner = prune.GradualPruner(ddp, 0.8, start_step=0, end_step=4, frequency=2)
    train(6, after_step=pruner.step)
    mask = prune.get_mask(model[2])
    assert bool((model[2].weight[~mask] == 0).all())
    ddp_harness.same_on_every_rank(dict(model.named_parameters()) | {"mask": mask}, "pruned or trained weights")


@pytest.mark.skipif(not ddp_harness.available(), reason="needs torch.distributed (gloo)")
def test_ranks_prune_alike_under_ddp(tmp_path):
    ddp_harness.run(_worker, tmp_path)
