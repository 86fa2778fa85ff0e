"""The compression steps of the demo, each a function from models to a new model.

Every function returns a fresh model (inputs are never modified) so the demo can
time and save every stage side by side. Training uses :func:`effdl.training.train`
(SGD + cosine decay) on the digits' training split; accuracy is measured by the
caller on the test split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

import effdl
from effdl import prune, quant, serialize
from effdl.distill import Distiller

Progress = Callable[[int, float], None]


def _linear_only(mod: nn.Module, name: str) -> bool:
    # effdl's int8 kernels are linear kernels: convolutions stay float (a fake-quant conv
    # would cost accuracy and gain neither speed nor bytes)
    return isinstance(mod, nn.Linear)


def train_from_scratch(arch: str, kwargs: dict, data, epochs: int, lr: float, seed: int,
                       device: torch.device, progress: Progress | None = None) -> nn.Module:
    """A freshly initialised ``arch`` (same weights on every device: built on the CPU) trained
    on labels (cross-entropy)."""
    torch.manual_seed(seed)
    model = serialize.build(arch, **kwargs).to(device)
    effdl.training.train(model, data, epochs=epochs, lr=lr, progress=progress)
    return model.eval()


def distill(teacher: nn.Module, arch: str, kwargs: dict, data, epochs: int, lr: float, seed: int, T: float,
            alpha: float, device: torch.device, progress: Progress | None = None) -> nn.Module:
    """A fresh ``arch`` student trained on the teacher's soft targets plus the labels."""
    torch.manual_seed(seed)
    student = serialize.build(arch, **kwargs).to(device)
    distiller = Distiller(copy.deepcopy(teacher), student, T=T, alpha=alpha)
    effdl.training.train(distiller, data, epochs=epochs, lr=lr, compute_loss=Distiller.compute_loss,
                         progress=progress)
    return student.eval()


def _finetune(model: nn.Module, teacher: nn.Module | None, data, epochs: int, lr: float, T: float, alpha: float,
              after_step: Callable[[], None] | None = None, progress: Progress | None = None) -> None:
    if teacher is not None:
        distiller = Distiller(copy.deepcopy(teacher), model, T=T, alpha=alpha)
        effdl.training.train(distiller, data, epochs=epochs, lr=lr, compute_loss=Distiller.compute_loss,
                             after_step=after_step, progress=progress)
    else:
        effdl.training.train(model, data, epochs=epochs, lr=lr, after_step=after_step, progress=progress)


def prune_and_finetune(student: nn.Module, teacher: nn.Module | None, method: str, sparsity: float, data,
                       epochs: int, lr: float, T: float, alpha: float, example: torch.Tensor,
                       progress: Progress | None = None) -> tuple[nn.Module, str]:
    """Prune a copy of ``student`` and fine-tune it (distilling from ``teacher`` when given).

    ``method``: ``"2:4"`` (every conv/linear whose input dimension allows it: the
    pointwise convs and the classifier; depthwise and stem convs have 1 input
    channel per group and stay dense), ``"unstructured"`` (global magnitude,
    ``sparsity``) or ``"channel"`` (L1 channel pruning of ``sparsity`` of the
    channels: a smaller dense model). Returns the plain model (masks made
    permanent) and a one-line summary.
    """
    model = copy.deepcopy(student)
    if method == "2:4":
        report = prune.nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
        summary = report.summary()
    elif method == "unstructured":
        report = prune.magnitude_prune(model, sparsity, verbose=False)
        summary = report.summary()
    else:
        arch = getattr(model, serialize.ARCHITECTURE_ATTR)
        model = prune.channel_prune(model.eval(), sparsity, example, round_to=4)
        setattr(model, serialize.ARCHITECTURE_ATTR, arch)
        summary = str(model.prune_report).splitlines()[0]
    _finetune(model, teacher, data, epochs, lr, T, alpha, progress=progress)
    prune.make_permanent(model)
    return model.eval(), summary


def ptq(model: nn.Module, data, batches: int = 8) -> tuple[nn.Module, str]:
    """Post-training int8 of the linear layers (weights per channel, activations per row,
    dynamic: the W8A8 kernel of ``QLinear``); the result runs on effdl's int8 kernel."""
    q = copy.deepcopy(model).eval()
    quant.prepare_ptq(q, 8, filter_fn=_linear_only, verbose=False)
    quant.calibrate(q, data, batches=batches)
    quant.convert_ptq(q, verbose=False)
    return q.eval(), effdl.convert.last_report.summary()


def qat(model: nn.Module, teacher: nn.Module, data, epochs: int, lr: float, T: float, alpha: float,
        progress: Progress | None = None) -> tuple[nn.Module, str]:
    """Quantization-aware fine-tuning of the linear layers at 8 bits (distilling from
    ``teacher``), then conversion to ``QLinear``. Weights that are zero (pruned) stay zero."""
    q = copy.deepcopy(model)
    zeros = [(p, p.detach() == 0) for p in q.parameters() if p.dim() > 1 and bool((p == 0).any())]

    def keep_zeros() -> None:
        with torch.no_grad():
            for p, z in zeros:
                p.masked_fill_(z, 0.0)

    quant.prepare_qat(q, 8, filter_fn=_linear_only, verbose=False)
    _finetune(q, teacher, data, epochs, lr, T, alpha, after_step=keep_zeros, progress=progress)
    freeze = quant.freeze_observers(q)
    quant.convert_qat(freeze.eval(), verbose=False)
    return q.eval(), effdl.convert.last_report.summary()


def to_kernels(model: nn.Module, sparse_linear: bool) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` on effdl's kernels: depthwise + pointwise runs fused into
    ``DWSeparableConv2d`` (BatchNorms folded), and, with ``sparse_linear``, the 2:4
    linear layers as ``SparseLinear``. Returns the model and what each conversion did."""
    out = copy.deepcopy(model).eval()
    done = []
    effdl.fuse_dwsep_(out, verbose=False)
    done.append(effdl.convert.last_report.summary())
    if sparse_linear:
        effdl.sparsify_(out, 2, 4, verbose=False)
        done.append(effdl.convert.last_report.summary())
    return out, done
