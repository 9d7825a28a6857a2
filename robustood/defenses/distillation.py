"""Defensive distillation: a teacher trained at softmax temperature T, a student trained on its soft labels.

Papernot, McDaniel, Wu, Jha & Swami, "Distillation as a Defense to Adversarial
Perturbations against Deep Neural Networks", IEEE S&P 2016.

1. The **teacher** is trained with cross-entropy on ``softmax(logits / T)`` (robustood's
   :func:`~robustood.train.fit`, so it gets validation, early stopping and resumable state).
2. The **student** is trained on the teacher's soft labels ``softmax(teacher(x) / T)`` at
   the same T by ART's ``DefensiveDistillation`` (ART only relabels and calls the
   estimator's ``fit``; robustood hands it both networks wrapped as ``softmax(· / T)``,
   because ART requires probability outputs and its own temperature is fixed at 1).
   Under ``torchrun`` the teacher trains in DistributedDataParallel like any recipe; ART's
   loop has no DDP, so rank 0 alone trains the student while the other ranks wait, and
   its weights are then broadcast to every rank (the wait is bounded by
   ``ROBUSTOOD_DIST_TIMEOUT_MIN``, 30 minutes by default).
3. The student is used at **T = 1**: its logits are about T times larger than a plainly
   trained model's, its softmax saturates and gradients of the cross-entropy vanish in
   float32. That *masks* gradients rather than removing adversarial examples (Carlini &
   Wagner, 2016): attacking the student's logits divided by T, which predicts the same
   classes, finds them again. ``robustood defend --defense distill`` reports both.

:func:`robustood.resolve.distilled_pretrained` caches both networks; ``distill:T`` names the
student as a model everywhere a model is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed as dist_
from ..data import DatasetBundle, stack_dataset
from ..errors import RobustoodError
from ..models import build_model, default_arch
from ..train import Objective, TrainConfig, fit
from ..utils import seeded, select_device
from . import _art

__all__ = [
    "Distilled",
    "TemperatureScaled",
    "check_temperature",
    "distil",
    "softmax_sharpness",
    "temperature_cross_entropy",
]


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float, or a :class:`RobustoodError` unless it is finite and > 0."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise RobustoodError(f"temperature must be a number > 0, e.g. 20, got {temperature!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise RobustoodError(f"temperature must be a finite number > 0 (Papernot et al. use 20-100), got {temperature}")
    return t


def temperature_cross_entropy(temperature: float) -> Objective:
    """Training objective: cross-entropy of ``softmax(logits / T)`` against the labels (the teacher's loss)."""
    t = check_temperature(temperature)

    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return F.cross_entropy(logits / t, y), logits

    return objective


class TemperatureScaled(nn.Module):
    """``model(x) / T``: the same predicted classes, logits on a T-times smaller scale."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = check_temperature(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


@dataclass
class Distilled:
    """The outcome of :func:`distil`: both networks (logits out, i.e. softmax at T = 1) and T."""

    teacher: nn.Module
    student: nn.Module
    temperature: float
    teacher_epochs: int
    student_epochs: int


def distil(
    bundle: DatasetBundle,
    *,
    temperature: float = 20.0,
    arch: str | None = None,
    teacher: nn.Module | None = None,
    config: TrainConfig | None = None,
    student_epochs: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
) -> Distilled:
    """Defensive distillation of a zoo architecture on ``bundle`` at ``temperature``.

    Args:
        temperature: T > 0 of the teacher's training and of the soft labels (paper: 20–100).
        arch: zoo architecture of both networks (default: the dataset's default).
        teacher: an already-trained teacher (trained at ``temperature``) to skip step 1.
        config: optimisation settings of the teacher; the student uses its lr and batch size.
        student_epochs: epochs of the student (default: the teacher's number of epochs).
    """
    t = check_temperature(temperature)
    cfg = config or TrainConfig()
    w = dist_.init_from_env(device)
    dev = select_device(device)
    arch = (arch or default_arch(bundle.info)).lower()
    teacher_epochs = 0
    if teacher is None:
        with seeded(cfg.seed):
            teacher = build_model(arch, bundle.info)
        result = fit(teacher, bundle, cfg, objective=temperature_cross_entropy(t), device=dev, progress=progress)
        teacher_epochs = len(result.history)
    teacher = teacher.to(dev).eval()
    epochs = int(student_epochs) if student_epochs is not None else (teacher_epochs or cfg.epochs)
    if epochs < 1:
        raise RobustoodError(f"student_epochs must be at least 1, got {student_epochs}")
    with seeded(cfg.seed + 1):  # the student's initialisation and ART's shuffling
        student = build_model(arch, bundle.info).to(dev)
        if w.is_main:  # ART's own loop has no DDP: rank 0 trains the student, the others wait for it
            x, _ = stack_dataset(bundle.train)
            _art.distil_with_art(
                teacher, student, x, temperature=t, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, device=dev
            )
    if w.distributed:
        weights = {k: v.detach().cpu() for k, v in student.state_dict().items()} if w.is_main else None
        student.load_state_dict(dist_.broadcast_object(weights, w))
    return Distilled(teacher, student.eval(), t, teacher_epochs, epochs)


@torch.no_grad()
def softmax_sharpness(model: nn.Module, x: torch.Tensor, temperature: float = 1.0) -> dict[str, float]:
    """How saturated ``softmax(model(x) / T)`` is: mean top probability and mean entropy (nats)."""
    p = F.softmax(model(x).float() / check_temperature(temperature), dim=1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
    return {"mean_max_prob": float(p.amax(1).mean()), "mean_entropy": float(entropy.mean())}
