"""The digits split and the training loop the accuracy tests rely on."""

import pytest
import torch

from effdl import data, training


def test_digits_split_is_stratified_and_deterministic():
    a, b = data.digits(seed=0), data.digits(seed=0)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert a.train_x.shape[1:] == (1, 8, 8) and a.train_x.dtype == torch.float32
    assert len(a.train_x) + len(a.test_x) == 1797
    assert float(a.train_x.min()) == 0.0 and float(a.train_x.max()) == 1.0
    # every class is in the test set in about the requested fraction
    counts = torch.bincount(a.test_y, minlength=10)
    assert int(counts.min()) >= 40
    assert not torch.equal(data.digits(seed=1).test_y, a.test_y) or not torch.equal(
        data.digits(seed=1).test_x, a.test_x)


def test_digits_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits(test_fraction=1.0)


def test_training_learns_and_evaluate_counts():
    s = data.digits()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    before = training.evaluate(model, s.test_x, s.test_y)
    calls = []
    training.train(model, data.loader(s.train_x, s.train_y), epochs=3, lr=0.1,
                   after_step=lambda: calls.append(1))
    after = training.evaluate(model, s.test_x, s.test_y)
    assert after > 85.0 > before
    assert len(calls) == 3 * len(data.loader(s.train_x, s.train_y))
    with pytest.raises(ValueError, match="at least one"):
        training.evaluate(model, s.test_x[:0], s.test_y[:0])
