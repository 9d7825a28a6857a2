"""The one module of :mod:`robustood.defenses` that imports ART.

Everything else in the package speaks torch tensors; this module converts to NumPy
once on the way in. Pinned surface (ART 1.20.1):
``art.defences.transformer.evasion.DefensiveDistillation(classifier, batch_size, nb_epochs)``
called as ``defence(x, transformed_classifier)``; ``art.estimators.classification.PyTorchClassifier``.
(The feature-squeezing squeezers are plain torch in :mod:`robustood.defenses.squeeze`; its
tests compare them with ART's ``FeatureSqueezing`` and ``SpatialSmoothing``.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from art.defences.transformer.evasion import DefensiveDistillation
from art.estimators.classification import PyTorchClassifier
from torch import nn
from torch.nn.modules.loss import _Loss

__all__ = ["distil_with_art"]


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


class _SoftmaxAt(nn.Module):
    """``softmax(model(x) / T)``: the probability outputs ART's distillation checks for."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.model(x) / self.temperature, dim=1)


class _SoftCrossEntropy(_Loss):
    """Cross-entropy between soft targets and predicted probabilities: ``-Σ t·log p``, batch mean.

    ART's estimator hands the loss the student's output (probabilities at temperature T) and
    the teacher's probabilities, unchanged because this is not a ``CrossEntropyLoss`` (which
    ART would reduce to hard labels).
    """

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -(target * probs.clamp_min(1e-12).log()).sum(1).mean()


def _estimator(
    module: nn.Module, shape: tuple[int, ...], classes: int, device: torch.device, **kw
) -> PyTorchClassifier:
    return PyTorchClassifier(
        model=module,
        loss=kw.pop("loss", _SoftCrossEntropy()),
        input_shape=tuple(shape),
        nb_classes=classes,
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu",
        **kw,
    )


def distil_with_art(
    teacher: nn.Module,
    student: nn.Module,
    x: torch.Tensor,
    *,
    temperature: float,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device,
) -> nn.Module:
    """Train ``student`` on ``teacher``'s soft labels at ``temperature`` with ART's ``DefensiveDistillation``.

    Both networks are wrapped so that ART sees ``softmax(logits / T)`` (ART refuses
    non-probability outputs); the student is trained in place and returned unwrapped,
    so it answers with raw logits, i.e. softmax at T = 1.
    """
    classes = int(teacher(x[:1].to(device)).shape[1])
    teacher_art = _estimator(_SoftmaxAt(teacher, temperature).eval(), x.shape[1:], classes, device)
    wrapped = _SoftmaxAt(student, temperature)
    student_art = _estimator(
        wrapped, x.shape[1:], classes, device, optimizer=torch.optim.Adam(student.parameters(), lr=lr)
    )
    DefensiveDistillation(teacher_art, batch_size=int(batch_size), nb_epochs=int(epochs))(_numpy(x), student_art)
    return student.eval()
