"""Run a function on 2 CPU processes joined in a gloo process group (for the DDP tests)."""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def _entry(rank: int, fn: Callable[[int], None], init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        fn(rank)
    finally:
        # every DDP wrapper (and its reducer) must be gone, and every rank done
        # communicating, before the process group is torn down: a reducer freed
        # after destroy_process_group, or a rank exiting mid-exchange, aborts the
        # other process ("terminate called without an active exception")
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def run(fn: Callable[[int], None], tmp_path) -> None:
    """``fn(rank)`` on ``WORLD`` spawned processes; ``fn`` must be a module-level function."""
    mp.spawn(_entry, args=(fn, str(tmp_path / "store")), nprocs=WORLD, join=True)


def same_on_every_rank(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Assert that every rank holds exactly the same values."""
    flat = torch.cat([t.detach().double().flatten() for t in tensors.values()])
    gathered = [torch.empty_like(flat) for _ in range(WORLD)]
    dist.all_gather(gathered, flat)
    assert torch.equal(gathered[0], gathered[1]), f"the ranks hold different {what}"


def available() -> bool:
    return dist.is_available() and dist.is_gloo_available()
