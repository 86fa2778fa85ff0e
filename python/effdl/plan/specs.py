"""Model and input specifications of ``effdl plan`` (no downloads: random weights).

Models (``--model``):
    ``torchvision:NAME``          ``torchvision.models.get_model(NAME, weights=None)``
    ``hf-bert-tiny|mini|small|base``  ``transformers.BertModel`` from a ``BertConfig``
                                  (hidden 128/256/512/768, layers 2/4/4/12)
    ``hf-bert:KEY=V,KEY=V``       ``BertModel(BertConfig(KEY=V, ...))`` (integer values)
    ``path/to/file.py:FACTORY`` or ``package.module:FACTORY``   ``FACTORY()`` returns the model
Input (``--input``): sizes joined by ``x``, e.g. ``1x3x224x224``: a random normal
tensor; for the BERT models ``BATCHxSEQ`` random token ids.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

BERT_PRESETS = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    "mini": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},
    "small": {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 2048},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


def _bert(config: dict) -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(**config))


def load_model(spec: str) -> nn.Module:
    """The model named by ``spec`` (see the module docstring), in eval mode."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    if spec.startswith("torchvision:"):
        import torchvision

        torch.manual_seed(0)
        model = torchvision.models.get_model(spec.split(":", 1)[1], weights=None)
    elif spec.startswith("hf-bert-"):
        size = spec.removeprefix("hf-bert-")
        if size not in BERT_PRESETS:
            raise ValueError(f"unknown BERT preset {spec!r}; expected hf-bert-{{{','.join(BERT_PRESETS)}}}")
        model = _bert(BERT_PRESETS[size])
    elif spec.startswith("hf-bert:"):
        try:
            config = {k.strip(): int(v) for k, v in (kv.split("=") for kv in spec[8:].split(",") if kv)}
        except ValueError as exc:
            raise ValueError(f"hf-bert spec must be hf-bert:KEY=INT,KEY=INT, got {spec!r}") from exc
        model = _bert(config)
    elif ":" in spec:
        where, factory = spec.rsplit(":", 1)
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ValueError(f"model spec {spec!r}: no file {where}")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        if not hasattr(module, factory):
            raise ValueError(f"model spec {spec!r}: {where} has no {factory}")
        model = getattr(module, factory)()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model spec {spec!r}: {factory}() returned {type(model).__name__}, not an nn.Module")
    else:
        raise ValueError(f"unknown model spec {spec!r}; expected torchvision:NAME, hf-bert-SIZE, hf-bert:K=V,..., "
                         "or path/to/file.py:FACTORY / package.module:FACTORY")
    return model.eval()


def parse_shape(text: str) -> list[int]:
    try:
        shape = [int(s) for s in text.lower().split("x")]
    except ValueError:
        shape = []
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input shape must be positive sizes joined by 'x' (e.g. 1x3x224x224), got {text!r}")
    return shape


def make_input(model: nn.Module, shape_text: str, seed: int = 0):
    """A random example input of the given shape (token ids for a Hugging Face BERT)."""
    shape = parse_shape(shape_text)
    gen = torch.Generator().manual_seed(seed)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "vocab_size"):
        if len(shape) != 2:
            raise ValueError(f"a BERT input is BATCHxSEQ token ids, got {shape_text!r}")
        return torch.randint(0, config.vocab_size, shape, generator=gen)
    return torch.randn(shape, generator=gen)
