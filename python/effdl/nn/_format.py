"""The format-version buffer every effdl module saves with its canonical tensors."""

from __future__ import annotations

import torch
from torch import nn

FORMAT_VERSION = 1


def register_format_version(module: nn.Module) -> None:
    """Adds the ``format_version`` buffer (int32 scalar) that travels in ``state_dict``."""
    module.register_buffer("format_version", torch.tensor(FORMAT_VERSION, dtype=torch.int32))


def check_loaded_version(module_name: str, state_dict: dict, prefix: str) -> None:
    """Refuse a state saved by a newer, incompatible format."""
    key = prefix + "format_version"
    if key in state_dict:
        saved = int(state_dict[key])
        if saved > FORMAT_VERSION:
            raise RuntimeError(
                f"{module_name}: state was saved with format version {saved}, this effdl reads up to {FORMAT_VERSION}"
            )


def check_loaded_pattern(module_name: str, state_dict: dict, prefix: str, n: int, m: int) -> None:
    """Refuse an N:M state whose saved ``nm_pattern`` is not this module's ``n:m``."""
    key = prefix + "nm_pattern"
    if key in state_dict:
        saved = [int(v) for v in state_dict[key]]
        if saved != [n, m]:
            raise RuntimeError(f"{module_name}: state holds a {saved[0]}:{saved[1]} weight, this module is {n}:{m}")
