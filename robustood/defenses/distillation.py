"""Defensive distillation: a teacher trained at softmax temperature T, a student trained on its soft labels.

Papernot, McDaniel, Wu, Jha & Swami, "Distillation as a Defense to Adversarial
Perturbations against Deep Neural Networks", IEEE S&P 2016.

1. The **teacher** is trained with cross-entropy on ``softmax(logits / T)`` (robustood's
   :func:`~robustood.train.fit`, so it gets validation, early stopping and resumable state).
2. The **student** is trained on the teacher's soft labels ``softmax(teacher(x) / T)`` at
   the same T by ART's ``DefensiveDistillation`` (ART only relabels and calls the
   estimator's ``fit``; robustood hands it both networks wrapped as ``softmax(· / T)``,
   because ART requires probability outputs and its own temperature is fixed at 1).
3. The student is used at **T = 1**: its logits are about T times larger than a plainly
   trained model's, its softmax saturates and gradients of the cross-entropy vanish in
   float32. That *masks* gradients rather than removing adversarial examples (Carlini &
   Wagner, 2016): attacking the student's logits divided by T, which predicts the same
   classes, finds them again. :func:`distillation_rows` reports both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetBundle, stack_dataset
from ..errors import RobustoodError
from ..inference import accuracy
from ..models import build_model, default_arch, load_checkpoint, save_checkpoint
from ..train import Objective, TrainConfig, cached_model_path, fit
from ..utils import format_eps, seed_everything, select_device
from . import _art
from ._eval import AttackSpec, adversarial_batches

__all__ = [
    "Distilled",
    "TemperatureScaled",
    "check_temperature",
    "distil",
    "distillation_rows",
    "distilled_pretrained",
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
        raise RobustoodError(f"temperature must be > 0 (Papernot et al. use 20-100), got {temperature}")
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
    device: torch.device | str | None = None,
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
    dev = select_device(device)
    arch = (arch or default_arch(bundle.info)).lower()
    teacher_epochs = 0
    if teacher is None:
        seed_everything(cfg.seed)
        teacher = build_model(arch, bundle.info)
        result = fit(teacher, bundle, cfg, objective=temperature_cross_entropy(t), device=dev, progress=progress)
        teacher_epochs = len(result.history)
    teacher = teacher.to(dev).eval()
    epochs = int(student_epochs) if student_epochs is not None else (teacher_epochs or cfg.epochs)
    if epochs < 1:
        raise RobustoodError(f"student_epochs must be at least 1, got {student_epochs}")
    seed_everything(cfg.seed + 1)
    student = build_model(arch, bundle.info).to(dev)
    x, _ = stack_dataset(bundle.train)
    _art.distil_with_art(
        teacher, student, x, temperature=t, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, device=dev
    )
    return Distilled(teacher, student.eval(), t, teacher_epochs, epochs)


@torch.no_grad()
def softmax_sharpness(model: nn.Module, x: torch.Tensor, temperature: float = 1.0) -> dict[str, float]:
    """How saturated ``softmax(model(x) / T)`` is: mean top probability and mean entropy (nats)."""
    p = F.softmax(model(x).float() / check_temperature(temperature), dim=1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
    return {"mean_max_prob": float(p.amax(1).mean()), "mean_entropy": float(entropy.mean())}


def distillation_rows(
    undefended: nn.Module,
    distilled: Distilled,
    bundle: DatasetBundle,
    attacks: Sequence[AttackSpec],
    *,
    device: torch.device | str | None = None,
    batch_size: int = 256,
    progress: bool | None = None,
    **attack_kwargs: Any,
) -> list[dict[str, Any]]:
    """Clean and robust test accuracy of the undefended model and the distilled student per attack × eps.

    The student is attacked twice: through its softmax at T = 1 (as deployed; gradients
    masked) and through its logits divided by T (same predictions, gradients intact).
    The adversarial examples are always scored on the deployed student.
    """
    dev = select_device(device)
    t = distilled.temperature
    targets = [
        ("undefended", "softmax (T=1)", undefended, undefended),
        ("distilled", "softmax (T=1)", distilled.student, distilled.student),
        ("distilled", f"logits / T (T={t:g})", distilled.student, TemperatureScaled(distilled.student, t)),
    ]
    rows: list[dict[str, Any]] = []
    for name, eps in attacks:
        for label, attacked_through, deployed, surrogate in targets:
            clean = robust = seen = 0
            for x, y, x_adv in adversarial_batches(
                surrogate, bundle.test, name, eps, device=dev, batch_size=batch_size, progress=progress, **attack_kwargs
            ):
                with torch.no_grad():
                    clean += int((deployed(x).argmax(1) == y).sum())
                    robust += int((deployed(x_adv).argmax(1) == y).sum())
                seen += len(y)
            rows.append(
                {
                    "model": label,
                    "attacked_through": attacked_through,
                    "attack": name,
                    "eps": format_eps(eps),
                    "clean_accuracy": clean / max(seen, 1),
                    "robust_accuracy": robust / max(seen, 1),
                }
            )
    return rows


def distilled_pretrained(
    bundle: DatasetBundle,
    arch: str | None = None,
    *,
    temperature: float = 20.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: str | Path | None = None,
    config: TrainConfig | None = None,
    retrain: bool = False,
    progress: bool | None = None,
) -> Distilled:
    """:func:`distil`, cached like :func:`robustood.train.pretrained`: the teacher and the student
    are kept under the model cache (recipes ``distill-teacher:T`` and ``distill:T``) and reused."""
    t = check_temperature(temperature)
    arch = (arch or default_arch(bundle.info)).lower()
    dev = select_device(device)
    paths = [
        cached_model_path(bundle, arch, f"{kind}:{t:g}", seed, cache, config) for kind in ("distill-teacher", "distill")
    ]
    if not retrain and all(p.exists() for p in paths):
        (teacher, meta_t), (student, meta_s) = (load_checkpoint(p) for p in paths)
        return Distilled(
            teacher.to(dev).eval(), student.to(dev).eval(), t, int(meta_t["epochs"]), int(meta_s["epochs"])
        )
    cfg = config or TrainConfig(seed=seed)
    result = distil(bundle, temperature=t, arch=arch, config=cfg, device=dev, progress=progress)
    for path, model, kind, epochs in zip(
        paths,
        (result.teacher, result.student),
        ("distill-teacher", "distill"),
        (result.teacher_epochs, result.student_epochs),
        strict=True,
    ):
        save_checkpoint(
            model,  # type: ignore[arg-type]
            path,
            bundle.info,
            arch,
            recipe=f"{kind}:{t:g}",
            seed=seed,
            epochs=epochs,
            test_accuracy=accuracy(model, bundle.test, dev),
            config=asdict(cfg),
        )
    return result
