"""FitNets hints (Romero et al. 2015): the student learns to predict the teacher's
intermediate features through a small learned adapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

HintSpec = Sequence[tuple[str, str]] | Mapping[str, str]


class HintAdapter(nn.Module):
    """Maps a student feature to the shape of the teacher feature it imitates.

    4-D features ``[B, Cs, H, W]``: a 1x1 conv to ``Ct`` channels after resizing
    the student grid to the teacher's (average pooling when the student map is
    larger, bilinear interpolation otherwise). Other features ``[*, Cs]``: a
    linear layer on the last dimension.
    """

    def __init__(self, student_channels: int, teacher_channels: int, spatial: bool = True) -> None:
        super().__init__()
        self.spatial = spatial
        self.proj = (nn.Conv2d(student_channels, teacher_channels, 1) if spatial
                     else nn.Linear(student_channels, teacher_channels))

    def forward(self, student_feature: torch.Tensor, teacher_shape: torch.Size) -> torch.Tensor:
        channel_dim = 1 if self.spatial else -1
        want = self.proj.in_channels if self.spatial else self.proj.in_features
        if student_feature.dim() != len(teacher_shape) or student_feature.shape[channel_dim] != want:
            raise RuntimeError(
                f"HintAdapter: expected a student feature with {want} channels (dim {channel_dim}) and the teacher "
                f"feature's rank {len(teacher_shape)}, got shape {list(student_feature.shape)}; if the channel "
                "count was guessed from the layer's attributes, pass example_input to Distiller")
        if self.spatial and student_feature.shape[-2:] != teacher_shape[-2:]:
            size = tuple(teacher_shape[-2:])
            if all(s >= t for s, t in zip(student_feature.shape[-2:], size, strict=True)):
                student_feature = F.adaptive_avg_pool2d(student_feature, size)
            else:
                student_feature = F.interpolate(student_feature, size=size, mode="bilinear", align_corners=False)
        return self.proj(student_feature)


def normalize_hints(hints: HintSpec | None) -> list[tuple[str, str]]:
    """``[(student layer, teacher layer), ...]`` from a list of pairs or a dict."""
    if hints is None:
        return []
    pairs = list(hints.items()) if isinstance(hints, Mapping) else list(hints)
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(n, str) for n in pair)):
            raise ValueError(f"Distiller: hints must be (student layer name, teacher layer name) pairs or a dict "
                             f"of names, got {pair!r}")
    return [(s, t) for s, t in pairs]


def resolve_layer(model: nn.Module, name: str, role: str) -> str:
    """The name inside ``model`` of its submodule ``name``; a leading ``"student."``/``"teacher."``
    (as in ``distiller.named_modules()``) is accepted."""
    candidates = [name]
    if name.startswith(role + "."):
        candidates.append(name[len(role) + 1:])
    for candidate in candidates:
        try:
            model.get_submodule(candidate)
            return candidate
        except AttributeError:
            continue
    raise ValueError(f"Distiller: the {role} has no layer named {name!r} "
                     f"(some of its layers: {[n for n, _ in model.named_modules()][1:8]})")


def _width(mod: nn.Module) -> tuple[int, bool] | None:
    """(output channels, whether the output is an image [B, C, H, W]) from a layer's attributes."""
    for attr, spatial in (("out_channels", not isinstance(mod, (nn.Conv1d, nn.Conv3d))),
                          ("num_features", not isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm3d))),
                          ("out_features", False), ("normalized_shape", False)):
        v = getattr(mod, attr, None)
        if isinstance(v, tuple) and len(v) == 1:
            v = v[0]
        if isinstance(v, int) and not isinstance(v, bool):
            return v, spatial
    return None


def guess_channels(layer: nn.Module) -> tuple[int, bool] | None:
    """(output channels, image-shaped?) of ``layer`` from its attributes, or from
    those of its last submodule that has some (a block ending in Conv-BN); None
    if none tells."""
    for mod in [layer, *reversed(list(layer.modules()))]:
        found = _width(mod)
        if found is not None:
            return found
    return None


def as_tensor(output, role: str, name: str) -> torch.Tensor:
    """A hooked layer's output as one tensor (the first element of a tuple output)."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise RuntimeError(f"Distiller: the {role} layer {name!r} returned {type(output).__name__}, not a tensor")
    return output
