"""Shared real-data fixtures for the accuracy tests: the scikit-learn digits and a small CNN."""

from __future__ import annotations

import functools

import torch
from torch import nn

from effdl import data, training

EPOCHS = 15


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU stages and a two-layer classifier: ≈ 97–98 % on the digits."""

    def __init__(self, width: int = 32, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@functools.cache
def split() -> data.Split:
    return data.digits(seed=0)


def train_loader(batch_size: int = 64, seed: int = 0):
    s = split()
    return data.loader(s.train_x, s.train_y, batch_size=batch_size, seed=seed)


def accuracy(model: nn.Module) -> float:
    s = split()
    return training.evaluate(model, s.test_x, s.test_y)


@functools.cache
def _trained_state(seed: int) -> dict:
    torch.manual_seed(seed)
    model = SmallCNN()
    training.train(model, train_loader(seed=seed), epochs=EPOCHS, lr=0.05)
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_cnn(seed: int = 0) -> SmallCNN:
    """A fresh copy of the dense CNN trained once per test session (per seed)."""
    model = SmallCNN()
    model.load_state_dict(_trained_state(seed))
    return model.eval()
