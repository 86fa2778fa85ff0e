"""``Distiller``: a frozen teacher, a student and the loss that ties them, as one module."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from effdl.distill.hints import (
    HintAdapter,
    HintSpec,
    as_tensor,
    guess_channels,
    normalize_hints,
    resolve_layer,
)
from effdl.distill.loss import check_temperature_and_alpha, distillation_loss


class Distiller(nn.Module):
    """Train ``student`` to imitate a frozen ``teacher`` (Hinton et al. 2015), and
    optionally to predict the teacher's intermediate features (FitNets hints).

    * ``distiller(x)`` returns the student's logits.
    * ``distiller(x, y)`` (or ``distiller.loss(x, y)``) returns the training loss:
      :func:`distillation_loss` of the two models' logits, plus ``beta`` times the
      mean squared error of every hint pair. Going through ``forward`` keeps it
      correct under ``DistributedDataParallel``; with ``effdl.training.train``
      pass ``compute_loss=Distiller.compute_loss``, which works on a Distiller
      and on a DDP-wrapped one alike.

    The teacher's parameters are frozen (``requires_grad=False``, so DDP leaves
    them out of its gradient reduction and optimizers built from
    ``distiller.parameters()`` skip them), it runs under ``torch.no_grad`` and it
    stays in eval mode even when ``.train()`` is called on the distiller, so its
    BatchNorm statistics never change and stay identical on every rank.

    Hints: ``hints=[(student layer, teacher layer), ...]`` (or a dict) name
    submodules of each model (``"features.6"``; a ``"student."``/``"teacher."``
    prefix is accepted). For each pair a :class:`HintAdapter` (1x1 conv, or a
    linear layer for non-image features) maps the student feature to the
    teacher's channels and grid; the adapters are parameters of the distiller,
    trained with the student, and are not part of ``distiller.student``, which is
    the model to keep. Forward hooks capture the features only while the loss
    is computed, so the student carries no hooks otherwise (``fuse_dwsep_`` and
    the other conversions leave hooked layers alone).

    Args:
        teacher: the trained model to imitate; frozen in place.
        student: the model to train.
        T: temperature of the soft targets, > 0.
        alpha: weight of the hard-label cross-entropy, in ``[0, 1]``.
        hints: layer pairs for feature distillation.
        beta: weight of each hint's MSE, >= 0.
        example_input: an input batch, used once to measure the hinted layers'
            channel counts. Without it they are read from the layers
            (``out_channels``, ``num_features``, ... of the layer or of its last
            submodule that has one).
        check_finite: reject NaN/infinite logits (one device synchronisation per step).
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        T: float = 3.0,
        alpha: float = 0.5,
        hints: HintSpec | None = None,
        beta: float = 1.0,
        example_input: torch.Tensor | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        check_temperature_and_alpha(T, alpha, "Distiller")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"Distiller: beta must be a finite number >= 0, got {beta!r}")
        if not isinstance(teacher, nn.Module) or not isinstance(student, nn.Module):
            raise ValueError("Distiller: teacher and student must be nn.Modules")
        if teacher is student or {id(p) for p in teacher.parameters()} & {id(p) for p in student.parameters()}:
            raise ValueError("Distiller: the teacher and the student share parameters; freezing the teacher "
                             "would freeze the student (pass a copy of the teacher)")
        self.teacher = teacher.requires_grad_(False).eval()
        self.student = student
        self.T, self.alpha, self.beta = float(T), float(alpha), float(beta)
        self.check_finite = check_finite
        self.hints: list[tuple[str, str]] = []
        self.adapters = nn.ModuleList()
        for s_name, t_name in normalize_hints(hints):
            self.hints.append((resolve_layer(student, s_name, "student"), resolve_layer(teacher, t_name, "teacher")))
        if self.hints:
            self._build_adapters(example_input)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # the teacher is a fixed function: BN uses, never updates, its statistics
        return self

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Student logits for ``x``; with ``labels``, the scalar training loss instead."""
        if labels is None:
            return self.student(x)
        if self.teacher.training:  # someone called teacher.train() directly
            self.teacher.eval()
        with self._capture() as features:
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            student_logits = self.student(x)
        loss = distillation_loss(student_logits, teacher_logits, labels, self.T, self.alpha,
                                 check_finite=self.check_finite)
        for i, adapter in enumerate(self.adapters):
            s_feat, t_feat = features.get(("student", i)), features.get(("teacher", i))
            if s_feat is None or t_feat is None:
                role, name = ("student", self.hints[i][0]) if s_feat is None else ("teacher", self.hints[i][1])
                raise RuntimeError(f"Distiller: the {role} layer {name!r} of hint {i} did not run in the forward pass")
            loss = loss + self.beta * F.mse_loss(adapter(s_feat, t_feat.shape), t_feat.to(s_feat.dtype))
        return loss

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss (same as ``self(x, labels)``)."""
        return self(x, labels)

    @staticmethod
    def compute_loss(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``compute_loss`` for :func:`effdl.training.train`: ``model(x, labels)``, where
        ``model`` is a Distiller or a DistributedDataParallel wrapping one."""
        return model(x, labels)

    @contextlib.contextmanager
    def _capture(self) -> Iterator[dict[tuple[str, int], torch.Tensor]]:
        """Forward hooks on the hinted layers for the duration of one loss computation."""
        features: dict[tuple[str, int], torch.Tensor] = {}
        handles = []

        def hook(key, name):
            def record(mod, args, output):
                features[key] = as_tensor(output, key[0], name)
            return record

        try:
            for i, (s_name, t_name) in enumerate(self.hints):
                for role, model, name in (("student", self.student, s_name), ("teacher", self.teacher, t_name)):
                    handles.append(model.get_submodule(name).register_forward_hook(hook((role, i), name)))
            yield features
        finally:
            for h in handles:
                h.remove()

    def _build_adapters(self, example_input: torch.Tensor | None) -> None:
        shapes = self._probe_shapes(example_input) if example_input is not None else self._guess_shapes()
        for i, (s_name, t_name) in enumerate(self.hints):
            (s_channels, s_spatial), (t_channels, t_spatial) = shapes[("student", i)], shapes[("teacher", i)]
            if s_spatial != t_spatial:
                raise ValueError(f"Distiller: hint {i} pairs the student layer {s_name!r} "
                                 f"({'[B, C, H, W]' if s_spatial else '[*, C]'} output) with the teacher layer "
                                 f"{t_name!r} ({'[B, C, H, W]' if t_spatial else '[*, C]'} output)")
            self.adapters.append(HintAdapter(s_channels, t_channels, spatial=s_spatial))

    def _guess_shapes(self) -> dict[tuple[str, int], tuple[int, bool]]:
        shapes = {}
        for i, (s_name, t_name) in enumerate(self.hints):
            for role, model, name in (("student", self.student, s_name), ("teacher", self.teacher, t_name)):
                found = guess_channels(model.get_submodule(name))
                if found is None:
                    raise ValueError(f"Distiller: cannot tell the output channels of the {role} layer {name!r} "
                                     "from its attributes; pass example_input")
                shapes[(role, i)] = found
        return shapes

    @torch.no_grad()
    def _probe_shapes(self, example_input: torch.Tensor) -> dict[tuple[str, int], tuple[int, bool]]:
        """(channels, image-shaped?) of every hinted feature, from one eval-mode forward of both models."""
        modes = [(m, m.training) for m in self.student.modules()]
        self.student.eval()
        try:
            with self._capture() as features:
                self.teacher(example_input)
                self.student(example_input)
        finally:
            for m, mode in modes:
                m.training = mode
        missing = [(role, self.hints[i]) for role in ("student", "teacher") for i in range(len(self.hints))
                   if (role, i) not in features]
        if missing:
            raise ValueError(f"Distiller: hinted layers did not run on example_input: {missing}")
        return {key: (feat.shape[1], True) if feat.dim() == 4 else (feat.shape[-1], False)
                for key, feat in features.items()}

    def extra_repr(self) -> str:
        return f"T={self.T}, alpha={self.alpha}, beta={self.beta}, hints={self.hints}"
