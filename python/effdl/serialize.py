"""Save a (compressed) model to ``safetensors`` + a small JSON, and load it back.

A saved model is two files side by side:

* ``<name>.safetensors``: the ``state_dict`` (canonical tensors: N:M ``values`` +
  ``meta``, int8 ``wq`` + ``w_scale``, folded depthwise-separable weights, ...);
* ``<name>.json``: how to rebuild the module tree: the architecture (a constructor
  registered in :data:`ARCHITECTURES` and its keyword arguments) and every layer
  that differs from what that constructor builds (a ``SparseLinear`` where it
  built an ``nn.Linear``, a ``DWSeparableConv2d`` + ``nn.Identity`` for a fused
  run, a narrower ``nn.Conv2d`` after channel pruning), with its constructor
  arguments.

``load`` builds the architecture, swaps those layers in and loads the tensors
(``strict``), so the reloaded model computes the same outputs. Models are
created with :func:`build` (which records the architecture on the model) or the
architecture is passed to :func:`save`::

    model = effdl.serialize.build("MobileNetV2", num_classes=10, in_channels=1, input_size=8)
    ...  # train, prune.make_permanent, fuse_dwsep_, sparsify_, quantize_ ...
    effdl.save(model, "out/student.safetensors")
    same = effdl.load("out/student.safetensors")
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effdl.convert import _set_submodule
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear, SparseQLinear

FORMAT = "effdl.saved_model"
FORMAT_VERSION = 1
ARCHITECTURE_ATTR = "effdl_architecture"


def _default_architectures() -> dict[str, Callable[..., nn.Module]]:
    from effdl import models

    return {
        "MobileNetV1": models.MobileNetV1,
        "MobileNetV2": models.MobileNetV2,
        "SmallResNet": models.SmallResNet,
        "ResNetTeacher": models.ResNetTeacher,
    }


#: Constructors that :func:`load` can rebuild, by name (see :func:`register_architecture`).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = _default_architectures()


def register_architecture(name: str, constructor: Callable[..., nn.Module]) -> None:
    """Make ``constructor`` (called with JSON-serializable keyword arguments) loadable as ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_architecture: name must be a non-empty str, got {name!r}")
    if not callable(constructor):
        raise ValueError(f"register_architecture: constructor must be callable, got {constructor!r}")
    ARCHITECTURES[name] = constructor


def _constructor(name: str) -> Callable[..., nn.Module]:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}: known are {sorted(ARCHITECTURES)} "
                         "(add yours with effdl.serialize.register_architecture)")
    return ARCHITECTURES[name]


def build(name: str, **kwargs: Any) -> nn.Module:
    """``ARCHITECTURES[name](**kwargs)``, remembering ``(name, kwargs)`` on the model for :func:`save`.

    ``kwargs`` must survive a JSON round trip (numbers, strings, lists, dicts)."""
    ctor = _constructor(name)
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise ValueError(f"build: the arguments of {name} must be JSON-serializable: {e}") from None
    model = ctor(**kwargs)
    setattr(model, ARCHITECTURE_ATTR, {"name": name, "kwargs": kwargs})
    return model


# ------------------------------------------------------------------ layer specs
# type -> (constructor arguments of a module, constructor). Only the layers that
# effdl's conversions and pruning create or reshape need to be here.

def _conv2d_args(m: nn.Conv2d) -> dict:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
            "stride": list(m.stride), "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
            "padding_mode": m.padding_mode}


def _bn_args(m: nn.BatchNorm2d) -> dict:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats}


def _dwsep_args(m: DWSeparableConv2d) -> dict:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
            "stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation),
            "dw_activation": m.dw_activation, "pw_activation": m.pw_activation, "bias": m.dw_bias is not None}


LAYER_SPECS: dict[type[nn.Module], Callable[[Any], dict]] = {
    nn.Identity: lambda m: {},
    nn.Linear: lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    nn.Conv2d: _conv2d_args,
    nn.BatchNorm2d: _bn_args,
    SparseLinear: lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                             "bias": m.bias is not None, "n": m.n, "m": m.m},
    QLinear: lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None,
                        "mode": m.mode},
    SparseQLinear: lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                              "bias": m.bias is not None, "n": m.n, "m": m.m, "mode": m.mode},
    DWSeparableConv2d: _dwsep_args,
}
_LAYER_TYPES = {cls.__name__: cls for cls in LAYER_SPECS}


def _spec(mod: nn.Module) -> dict | None:
    args = LAYER_SPECS.get(type(mod))
    return None if args is None else {"type": type(mod).__name__, "args": args(mod)}


def _layer_records(model: nn.Module, reference: nn.Module) -> list[dict]:
    """The layers of ``model`` that differ (type or constructor arguments) from ``reference``."""
    ref = dict(reference.named_modules())
    records = []
    replaced: list[str] = []
    for name, mod in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in replaced):
            continue
        before = ref.get(name)
        if before is not None and type(before) is type(mod) and _spec(before) == _spec(mod):
            continue
        if before is not None and type(before) is type(mod) and type(mod) not in LAYER_SPECS:
            continue  # a container of the architecture: its children are compared one by one
        spec = _spec(mod)
        if spec is None:
            raise ValueError(f"save: layer {name!r} ({type(mod).__name__}) is not what the architecture builds "
                             f"there and effdl.serialize cannot describe it (it can: "
                             f"{', '.join(sorted(_LAYER_TYPES))})")
        records.append({"name": name, **spec})
        replaced.append(name)
    return records


def _rebuild(architecture: dict, layers: list[dict], device: torch.device | str | None = None) -> nn.Module:
    with torch.device(device or "cpu"):
        model = _constructor(architecture["name"])(**architecture["kwargs"])
        for rec in layers:
            cls = _LAYER_TYPES.get(rec["type"])
            if cls is None:
                raise ValueError(f"load: layer {rec['name']!r} has unknown type {rec['type']!r}")
            _set_submodule(model, rec["name"], cls(**rec["args"]))
    setattr(model, ARCHITECTURE_ATTR, dict(architecture))
    return model


# ------------------------------------------------------------------ save / load

def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _memory_format(model: nn.Module) -> str:
    """``"channels_last"`` when the model's 4-D weights are laid out so (convolutions then
    pick other algorithms, so a reload must lay them out alike to give the same outputs)."""
    for p in model.parameters():
        if p.dim() != 4:
            continue
        # compare the strides themselves: is_contiguous() ignores size-1 dims, so a 1x1 or a
        # one-input-channel weight counts as contiguous in both formats
        _, i, h, w = p.shape
        if p.stride() == (h * w * i, 1, w * i, i) and p.stride() != (i * h * w, h * w, w, 1):
            return "channels_last"
    return "contiguous"


def save(model: nn.Module, path: str | os.PathLike, architecture: dict | None = None) -> dict[str, int]:
    """Write ``model`` to ``<path>.safetensors`` + ``<path>.json`` (a ``.safetensors``
    or ``.json`` suffix on ``path`` is dropped first).

    Args:
        model: a model made by :func:`build` (or any model when ``architecture`` is given),
            possibly converted by ``fuse_dwsep_``/``sparsify_``/``quantize_``/``quant.convert_*``
            or shrunk by ``prune.channel_prune``. Pruning masks must be removed first
            (``prune.make_permanent``).
        architecture: ``{"name": registered constructor, "kwargs": {...}}``; default: what
            :func:`build` recorded on the model.
    Returns:
        ``{file path: bytes on disk}`` of the two files written.
    Raises:
        ValueError: no known architecture, a layer it cannot describe, or a state that
            the rebuilt model would not accept (e.g. leftover pruning masks).
    """
    from safetensors.torch import save_file

    architecture = architecture or getattr(model, ARCHITECTURE_ATTR, None)
    if not architecture or "name" not in architecture:
        raise ValueError("save: the model does not say which architecture it is; make it with "
                         "effdl.serialize.build(name, **kwargs) or pass architecture={'name': ..., 'kwargs': ...}")
    architecture = {"name": architecture["name"], "kwargs": dict(architecture.get("kwargs", {}))}
    with torch.device("meta"):
        reference = _constructor(architecture["name"])(**architecture["kwargs"])
    layers = _layer_records(model, reference)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    rebuilt = _rebuild(architecture, layers, device="meta").state_dict()
    extra, missing = sorted(set(state) - set(rebuilt)), sorted(set(rebuilt) - set(state))
    if extra or missing:
        hint = " (pruning masks: call effdl.prune.make_permanent first)" if any("mask" in k for k in extra) else ""
        raise ValueError(f"save: the model's state does not fit its architecture + layer records: "
                         f"unexpected {extra[:5]}, missing {missing[:5]}{hint}")
    bad = [k for k in state if tuple(state[k].shape) != tuple(rebuilt[k].shape)]
    if bad:
        raise ValueError(f"save: tensors whose shape the rebuilt model would not accept: {bad[:5]}")
    tensors_path, json_path = _paths(path)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(tensors_path), metadata={"format": FORMAT})
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": architecture, "layers": layers,
           "memory_format": _memory_format(model), "tensors": tensors_path.name}
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    return {str(tensors_path): tensors_path.stat().st_size, str(json_path): json_path.stat().st_size}


def load(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a model written by :func:`save` (``path`` with or without its suffix), in eval mode."""
    from safetensors.torch import load_file

    tensors_path, json_path = _paths(path)
    if not json_path.exists() or not tensors_path.exists():
        raise FileNotFoundError(f"load: expected {json_path} and {tensors_path}")
    doc = json.loads(json_path.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"load: {json_path} is not an effdl saved model (format {doc.get('format')!r})")
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"load: {json_path} has format version {doc['format_version']}, this effdl reads up to "
                         f"{FORMAT_VERSION}")
    model = _rebuild(doc["architecture"], doc["layers"], device=device)
    model.load_state_dict(load_file(str(tensors_path), device=str(device)), strict=True)
    if doc.get("memory_format") == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def saved_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of a saved model: its ``.safetensors`` plus its ``.json``."""
    return sum(os.path.getsize(p) for p in _paths(path))
