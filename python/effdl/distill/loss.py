"""The knowledge-distillation loss of Hinton, Vinyals and Dean (2015)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_temperature_and_alpha(T: float, alpha: float, where: str) -> None:
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise ValueError(f"{where}: the temperature T must be a finite number > 0, got {T!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"{where}: alpha must be in [0, 1], got {alpha!r}")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    T: float = 3.0,
    alpha: float = 0.5,
    check_finite: bool = True,
) -> torch.Tensor:
    """``alpha * CE(student, labels) + (1 - alpha) * T**2 * KL(p_teacher^T || p_student^T)``.

    ``p^T = softmax(logits / T)``; the KL divergence is summed over the classes
    and averaged over the batch (``batchmean``). The ``T**2`` factor keeps the
    soft-target gradients at the same scale as the hard-label ones whatever the
    temperature (Hinton et al. 2015, section 2). Probabilities are handled as
    ``log_softmax`` throughout, in float32 at least. No gradient flows into the
    teacher's logits.

    Args:
        student_logits: ``[B, C]`` (or ``[*, C]``: every leading position counts
            as one example of the batch), floating point.
        teacher_logits: same shape as ``student_logits``.
        labels: integer class indices of shape ``[B]`` (``[*]``); may be ``None``
            only when ``alpha == 0`` (soft targets only).
        T: temperature, > 0.
        alpha: weight of the hard-label cross-entropy, in ``[0, 1]``.
        check_finite: raise if a logit is NaN or infinite. This reads one flag
            back from the device (a synchronisation on GPUs); pass ``False`` in a
            loop that must not synchronise.
    Returns:
        A scalar float32 (or float64 for float64 logits) loss.
    """
    check_temperature_and_alpha(T, alpha, "distillation_loss")
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() < 2:
            raise ValueError(f"distillation_loss: {name} must be a floating-point tensor [B, C], got "
                             f"{type(t).__name__ if not isinstance(t, torch.Tensor) else f'{t.dtype} {list(t.shape)}'}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"distillation_loss: student_logits {list(student_logits.shape)} and teacher_logits "
                         f"{list(teacher_logits.shape)} must have the same shape")
    if student_logits.numel() == 0:
        raise ValueError(f"distillation_loss: empty batch (logits of shape {list(student_logits.shape)})")
    if labels is None:
        if alpha != 0:
            raise ValueError(f"distillation_loss: labels are needed when alpha > 0 (got alpha={alpha}); "
                             "pass alpha=0 to distill from soft targets only")
    elif (not isinstance(labels, torch.Tensor) or labels.dtype not in _LABEL_DTYPES
          or labels.shape != student_logits.shape[:-1]):
        raise ValueError(f"distillation_loss: labels must be integer class indices of shape "
                         f"{list(student_logits.shape[:-1])}, got "
                         f"{type(labels).__name__ if not isinstance(labels, torch.Tensor) else f'{labels.dtype} {list(labels.shape)}'}")
    if check_finite and not bool(torch.isfinite(student_logits).all() & torch.isfinite(teacher_logits).all()):
        raise ValueError("distillation_loss: the logits contain NaN or infinite values")

    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    classes = student_logits.shape[-1]
    student = student_logits.reshape(-1, classes).to(dtype)
    teacher = teacher_logits.detach().reshape(-1, classes).to(dtype)
    hard = F.cross_entropy(student, labels.reshape(-1).long()) if alpha > 0 else None
    if alpha == 1:
        return hard
    log_p_student = F.log_softmax(student / T, dim=-1)
    log_p_teacher = F.log_softmax(teacher / T, dim=-1)
    # kl_div(input=log q, target=log p, log_target=True) = sum p (log p - log q): KL(teacher || student)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (T * T)
    return soft if hard is None else alpha * hard + (1.0 - alpha) * soft
