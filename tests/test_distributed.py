"""Quantization-aware training and distillation under DistributedDataParallel with
2 processes (gloo, CPU): each rank sees different data, and after training every
rank holds the same weights, the same (frozen) fake-quant state and an untouched teacher.
(Pruning under 2-process DDP: tests/test_prune_ddp.py.)"""

from __future__ import annotations

import pytest
import torch
from ddp import WORLD, available, run, same_on_every_rank
from torch import nn


def _conv_net(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, 10),
    )


def _worker(rank: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from effdl import data, quant, training
    from effdl.distill import Distiller
    from effdl.nn import QLinear

    split = data.digits(seed=0)
    # each rank trains on its own half of the training set
    mine = slice(rank, None, WORLD)
    loader = data.loader(split.train_x[mine][:256], split.train_y[mine][:256], batch_size=32, seed=rank)

    # --- QAT: fake-quant observers are buffers, which DDP broadcasts from rank 0 at every forward
    torch.manual_seed(0)
    model = quant.prepare_qat(_conv_net(8), bits=4, verbose=False)
    wrapped = DDP(model)
    training.train(wrapped, loader, epochs=1, lr=0.05)
    same_on_every_rank(dict(model.named_parameters()), "QAT weights")
    # like BatchNorm statistics, activation ranges follow each rank's last batch until DDP
    # broadcasts rank 0's buffers at the next forward: freeze them for the last steps (the
    # usual QAT recipe) and every rank converts with the same ranges
    quant.freeze_observers(model)
    training.train(wrapped, loader, epochs=1, lr=0.01)
    same_on_every_rank(dict(model.state_dict()), "QAT weights or fake-quant state")
    quant.convert_qat(model, verbose=False)
    assert any(isinstance(m, QLinear) for m in model.modules())
    with torch.no_grad():
        same_on_every_rank({"out": model.eval()(split.test_x[:64])}, "converted QAT outputs")

    # --- distillation with a FitNets hint: the teacher is frozen and in eval mode on every rank
    torch.manual_seed(1)
    teacher, student = _conv_net(16).eval(), _conv_net(4)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller = Distiller(teacher, student, T=3.0, alpha=0.5, hints=[("3", "3")])
    training.train(DDP(distiller), loader, epochs=1, lr=0.05, compute_loss=Distiller.compute_loss)
    assert not teacher.training
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    same_on_every_rank(dict(distiller.student.state_dict()) | dict(distiller.adapters.state_dict()),
                       "student or hint adapter weights")


@pytest.mark.skipif(not available(), reason="needs torch.distributed (gloo)")
def test_qat_and_distillation_under_two_process_ddp(tmp_path):
    run(_worker, tmp_path)
