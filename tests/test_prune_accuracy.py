"""Pruning on real data (the scikit-learn digits): the small CNN keeps its accuracy.

The dense reference is ``digits.trained_cnn()`` (≈ 98.9 % top-1 on the test split).
"Within one point" is 4.5 of the 450 test images.
"""

from __future__ import annotations

import math

import digits  # tests/digits.py
import pytest
import torch

import effdl
from effdl import training
from effdl.nn import SparseLinear
from effdl.prune import (
    GradualPruner,
    LotteryTicket,
    get_mask,
    magnitude_prune,
    make_permanent,
    nm_prune,
    sparsity_report,
)

PRUNED = ("features.3", "features.7", "classifier.0")  # all but the first conv and the classifier


@pytest.fixture(scope="module")
def dense_accuracy() -> float:
    acc = digits.accuracy(digits.trained_cnn())
    assert acc > 97.5
    return acc


def zeros_in(model, names=PRUNED) -> tuple[int, int]:
    weights = [model.get_submodule(name).weight for name in names]
    return sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)


def fine_tune(model, epochs=3, lr=0.01):
    training.train(model, digits.train_loader(seed=1), epochs=epochs, lr=lr)


def test_global_magnitude_80_percent_then_fine_tune(dense_accuracy):
    model = digits.trained_cnn()
    report = magnitude_prune(model, 0.8, verbose=False)
    assert set(report.pruned) == set(PRUNED)
    pruned_acc = digits.accuracy(model)
    fine_tune(model)
    acc = digits.accuracy(model)
    print(f"\ndense {dense_accuracy:.2f}%, 80% global magnitude: {pruned_acc:.2f}% -> fine-tuned {acc:.2f}%")
    zeros, total = zeros_in(model)
    assert zeros == math.floor(0.8 * total + 0.5)  # exact, and still exact after training
    assert acc >= dense_accuracy - 1.0


def test_2_4_then_fine_tune_then_sparse_kernels(dense_accuracy):
    model = digits.trained_cnn()
    report = nm_prune(model, 2, 4, verbose=False)
    assert set(report.pruned) == set(PRUNED)
    fine_tune(model)
    acc = digits.accuracy(model)
    print(f"\ndense {dense_accuracy:.2f}%, 2:4 fine-tuned {acc:.2f}%")
    assert acc >= dense_accuracy - 1.0
    make_permanent(model)
    x = digits.split().test_x
    with torch.no_grad():
        ref = model.eval()(x)
    # the N:M linear layer goes to the sparse kernel with the very same weights
    effdl.sparsify_(model, 2, 4, filter_fn=lambda mod, name: name in report.pruned, verbose=False)
    assert isinstance(model.classifier[0], SparseLinear) and not isinstance(model.classifier[2], SparseLinear)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)
    assert digits.accuracy(model) == acc


def test_gradual_pruning_during_training(dense_accuracy):
    torch.manual_seed(0)
    model = digits.SmallCNN()
    loader = digits.train_loader()
    per_epoch = len(loader)
    # train from scratch for 10 epochs, pruning from epoch 1 to epoch 6, twice an epoch
    pruner = GradualPruner(model, 0.8, start_step=per_epoch, end_step=6 * per_epoch, frequency=per_epoch // 2)
    training.train(model, loader, epochs=10, lr=0.05, after_step=pruner.step)
    acc = digits.accuracy(model)
    print(f"\ndense {dense_accuracy:.2f}%, gradual 80% from scratch: {acc:.2f}%")
    assert pruner.done
    zeros, total = zeros_in(model)
    assert zeros == math.floor(0.8 * total + 0.5)
    assert sparsity_report(model)["features.7"].sparsity > 0.5
    assert acc >= dense_accuracy - 1.0


def test_lottery_ticket_rewind_and_retrain(dense_accuracy):
    torch.manual_seed(0)
    model = digits.SmallCNN()
    ticket = LotteryTicket(model)  # records the initialisation
    init = {k: v.clone() for k, v in ticket.recorded.items()}
    training.train(model, digits.train_loader(), epochs=8, lr=0.05, after_step=ticket.step)
    ticket.prune(0.8)
    ticket.rewind()
    for name in PRUNED:
        mask = get_mask(model.get_submodule(name))
        weight = model.get_submodule(name).weight
        assert torch.equal(weight[mask], init[f"{name}.weight"][mask])
        assert bool((weight[~mask] == 0).all())
    training.train(model, digits.train_loader(seed=1), epochs=8, lr=0.05)
    acc = digits.accuracy(model)
    print(f"\ndense {dense_accuracy:.2f}%, lottery ticket at 80% retrained: {acc:.2f}%")
    zeros, total = zeros_in(model)
    assert zeros == math.floor(0.8 * total + 0.5)
    assert acc >= dense_accuracy - 1.5
