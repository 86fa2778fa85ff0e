"""Pruning a DistributedDataParallel model (2 processes, gloo): every rank prunes the
same weights, even with data-dependent criteria fed different batches per rank,
and the zeros survive DDP training."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

WORLD = 2


def _worker(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
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
    state = torch.cat([p.detach().flatten() for p in model.parameters()] + [mask.flatten().float()])
    gathered = [torch.empty_like(state) for _ in range(WORLD)]
    dist.all_gather(gathered, state)
    assert torch.equal(gathered[0], gathered[1]), "the ranks pruned or trained differently"
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed (gloo)")
def test_ranks_prune_alike_under_ddp(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"),), nprocs=WORLD, join=True)
