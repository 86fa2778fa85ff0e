"""Knowledge distillation: Hinton et al.'s soft-target loss and FitNets hints.

``distillation_loss`` is the loss on a pair of logits; ``Distiller`` holds a
frozen teacher and a student and trains the student with ``effdl.training.train``
(``compute_loss=Distiller.compute_loss``), also under DistributedDataParallel.
"""

from effdl.distill.distiller import Distiller
from effdl.distill.hints import HintAdapter
from effdl.distill.loss import distillation_loss

__all__ = ["Distiller", "HintAdapter", "distillation_loss"]
