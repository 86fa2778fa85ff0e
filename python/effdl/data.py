"""Real data that ships with scikit-learn: the handwritten digits (no download).

``load_digits`` holds 1797 real 8×8 grey-scale scans of the digits 0–9. It is
small enough that a CNN trains on it in seconds on a laptop CPU, and real
enough that pruning, quantization and distillation show their true effect on
accuracy — the data the tests and ``effdl demo`` use.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, TensorDataset


class Split(NamedTuple):
    """Train/test tensors: images ``[N, 1, 8, 8]`` float32 in ``[0, 1]``, labels ``[N]`` int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def digits(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """The scikit-learn digits as a stratified, seeded train/test split.

    Pixel values (0–16 in the source) are scaled to ``[0, 1]``. The split is a
    pure function of ``seed``, so every caller sees the same test set.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("effdl.data.digits needs scikit-learn: pip install 'effdl[demo]'") from e
    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target).long()
    # stratified: the same fraction of every class goes to the test set
    gen = torch.Generator().manual_seed(seed)
    test_idx, train_idx = [], []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_test = round(idx.numel() * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    return Split(x[tr].contiguous(), y[tr].contiguous(), x[te].contiguous(), y[te].contiguous())


def loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, shuffle: bool = True,
           seed: int = 0) -> DataLoader:
    """A ``DataLoader`` over in-memory tensors; shuffling is seeded for reproducibility."""
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=gen)
