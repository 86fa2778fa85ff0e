"""Minimal, explicit training and evaluation loops used by the tests and the demo.

They are deliberately plain (no hidden state): compression steps that must run
inside training — re-applying pruning masks, a gradual pruning schedule, a
distillation loss — plug in through ``compute_loss`` and ``after_step``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

ComputeLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def train(
    model: nn.Module,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]],
    epochs: int = 10,
    lr: float = 1e-2,
    compute_loss: ComputeLoss = cross_entropy_loss,
    optimizer: torch.optim.Optimizer | None = None,
    after_step: Callable[[], None] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place for ``epochs`` passes over ``data``.

    Args:
        data: re-iterable batches ``(x, y)`` (e.g. a ``DataLoader``).
        compute_loss: ``compute_loss(model, x, y) -> scalar``; cross-entropy by default
            (a distillation loss, for example, closes over its teacher).
        optimizer: defaults to SGD with momentum 0.9, weight decay 5e-4 and a
            cosine learning-rate decay over the whole run.
        after_step: called after every optimizer step (re-apply masks, advance a
            pruning schedule, ...).
        progress: called after each epoch with ``(epoch, mean loss)``.
    Returns:
        ``model``, in train mode.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    own_optimizer = optimizer is None
    if own_optimizer:
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = len(data) if hasattr(data, "__len__") else None
    scheduler = None
    if own_optimizer and steps_per_epoch:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        total, count = 0.0, 0
        for x, y in data:
            optimizer.zero_grad(set_to_none=True)
            loss = compute_loss(model, x, y)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if after_step is not None:
                after_step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        if progress is not None:
            progress(epoch, total / max(count, 1))
    return model


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent of ``model`` (switched to eval mode) on ``x``/``y``."""
    if len(x) == 0:
        raise ValueError("evaluate needs at least one example")
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
    model.train(was_training)
    return 100.0 * correct / len(x)
