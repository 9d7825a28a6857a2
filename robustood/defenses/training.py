"""Training objectives that defend: adversarial training, random-noise augmentation, outlier exposure.

Each objective is a frozen dataclass called as ``objective(model, x, y) -> (loss, clean_logits)``
(:data:`robustood.train.Objective`), so it plugs into :func:`robustood.train.fit` and gets
its seeding, progress bar, validation, early stopping and resumable state for free.
Training recipes (``adv:fgsm:2/255`` …) name them; see :mod:`robustood.defenses.recipes`.

Examples are made per batch, with no gradient through their generation: the attack runs
with the model in evaluation mode and its parameters frozen (robustood's attack guard),
then the model is back in training mode for one forward pass over the clean batch and
the examples together (concatenated, so batch-norm layers see both).

FGSM (L∞) adversarial training takes a shorter, exact path (:meth:`AdversarialTraining.fused`):
the FGSM direction is the sign of the input gradient of the clean loss, which the training
step needs anyway, so one backward pass over the clean batch yields both the input
gradient and the clean term's parameter gradients (the model is in training mode there,
as in Wong et al., "Fast is better than free", ICLR 2020). The parameter gradients are
handed to :func:`~robustood.train.fit`'s backward through a zero-valued linear term.
An epoch then costs about two clean epochs instead of about 2.7.

Under DistributedDataParallel (``torchrun``) ``model`` is the DDP wrapper: attacks run on
the network inside it (:func:`robustood.distributed.unwrap`), and the training loss goes
through the wrapper, so its gradients are averaged over the ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_ood.loss import OutlierExposureLoss
from torch import nn

from ..distributed import unwrap
from ..errors import RobustoodError
from ..utils import parse_eps

__all__ = ["AdversarialTraining", "NoiseAugmentation", "OutlierExposure", "check_weight"]

OE_SOURCES = ("noise", "natural", "adv")


def check_weight(weight: float, what: str = "adv-weight") -> float:
    """``weight`` as a float in [0, 1], else a :class:`RobustoodError`."""
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise RobustoodError(f"{what} must be a number in [0, 1], e.g. 0.5, got {weight!r}") from None
    if not 0 <= w <= 1:
        raise RobustoodError(f"{what} must be in [0, 1] (the loss is (1 - w)·clean + w·adversarial), got {weight}")
    return w


def _check_share(share: float) -> float:
    s = float(share)
    if not 0 < s <= 1:
        raise RobustoodError(f"adv-share must be in (0, 1], e.g. 0.1 to attack 10 % of each batch, got {share}")
    return s


def _mixed(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_other: torch.Tensor, y_other: torch.Tensor, w: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - w)·CE(clean) + w·CE(other)`` with one forward pass over both batches."""
    logits = model(torch.cat([x, x_other]))
    clean, other = logits[: len(x)], logits[len(x) :]
    loss = (1 - w) * F.cross_entropy(clean, y) + w * F.cross_entropy(other, y_other)
    return loss, clean


@dataclass(frozen=True)
class AdversarialTraining:
    """Adversarial training: loss = (1 − w)·CE(clean batch) + w·CE(adversarial examples).

    Goodfellow et al., ICLR 2015 (FGSM, w = 0.5); Madry et al., ICLR 2018 (PGD, w = 1);
    Kurakin et al., ICLR 2017 (a share of each batch attacked).

    Args:
        attack: attack name from :data:`robustood.attacks.ATTACKS` (``fgsm``, ``pgd`` …).
        eps: budget in [0, 1] pixel units (L∞ by default).
        weight: w in [0, 1].
        share: fraction of each batch (its first ``ceil(share·B)`` images, the batch is
            shuffled) for which adversarial examples are made, in (0, 1].
        steps: iterations of an iterative attack (``None``: the attack's default).
        step_size: step of an iterative attack (``None``: the attack's default).
        fused: FGSM only: take the input gradient from the training pass (see the module
            docstring); ``None`` = whenever the attack is FGSM in L∞.
    """

    attack: str = "fgsm"
    eps: float = 2 / 255
    weight: float = 0.5
    share: float = 1.0
    steps: int | None = None
    step_size: float | None = None
    norm: str = "inf"
    fused: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", parse_eps(self.eps))
        can_fuse = self.attack == "fgsm" and str(self.norm).lower().removeprefix("l") == "inf"
        if self.fused and not can_fuse:
            raise RobustoodError("fused=True applies to FGSM in L∞ only")
        object.__setattr__(self, "fused", can_fuse if self.fused is None else bool(self.fused))
        object.__setattr__(self, "weight", check_weight(self.weight))
        object.__setattr__(self, "share", _check_share(self.share))
        if self.steps is not None and int(self.steps) < 1:
            raise RobustoodError(f"steps must be at least 1, got {self.steps}")
        _ = self._attack  # builds (and so validates) the attack now, not at the first batch

    @cached_property
    def _attack(self) -> Any:
        from ..attacks import build_attack

        extra: dict[str, Any] = {"norm": self.norm}
        if self.steps is not None:
            extra["steps"] = int(self.steps)
        if self.step_size is not None:
            extra["step_size"] = parse_eps(self.step_size)
        return build_attack(self.attack, eps=self.eps, **extra)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.weight == 0:
            logits = model(x)
            return F.cross_entropy(logits, y), logits
        k = max(1, math.ceil(self.share * len(x)))
        if self.fused:
            return self.fused_step(model, x, y, k)
        x_adv = self._attack(unwrap(model), x[:k], y[:k]).detach()
        model.train()  # the attack guard restores the mode; make the training pass explicit
        return _mixed(model, x, y, x_adv, y[:k], self.weight)

    def fused_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """FGSM adversarial training sharing the clean pass: returns a loss whose gradient is exactly
        ``(1 − w)·∇CE(clean) + w·∇CE(x_adv)``, ``x_adv = clip(x + eps·sign(∇ₓCE(clean)))`` on the first ``k``."""
        params = [p for p in model.parameters() if p.requires_grad]
        x_in = x.detach().requires_grad_(True)
        clean = unwrap(model)(x_in)  # not through DDP: its gradients reach the loss through ``link``
        loss_clean = F.cross_entropy(clean, y)
        grads = torch.autograd.grad(loss_clean, [x_in, *params], allow_unused=True)
        x_adv = (x[:k] + self.eps * grads[0][:k].sign()).clamp_(0, 1).detach()
        loss_adv = F.cross_entropy(model(x_adv), y[:k])
        carried = [(p * g).sum() for p, g in zip(params, grads[1:], strict=True) if g is not None]
        link = torch.stack(carried).sum() * (1 - self.weight) if carried else loss_adv.new_zeros(())
        loss = (1 - self.weight) * loss_clean.detach() + self.weight * loss_adv + (link - link.detach())
        return loss, clean.detach()


@dataclass(frozen=True)
class NoiseAugmentation:
    """Random-noise baseline for adversarial training: the same loss, examples ``x ± eps`` per pixel.

    Each pixel moves by +eps or −eps with equal probability (then clipped to [0, 1]): the
    same L∞ and L2 size as an FGSM perturbation, in a random direction.
    """

    eps: float = 8 / 255
    weight: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", parse_eps(self.eps))
        object.__setattr__(self, "weight", check_weight(self.weight, "noise weight"))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign = torch.randint(0, 2, x.shape, device=x.device).to(x.dtype).mul_(2).sub_(1)
        return _mixed(model, x, y, (x + self.eps * sign).clamp(0, 1), y, self.weight)


@dataclass(frozen=True)
class OutlierExposure:
    """Outlier exposure (Hendrycks et al., ICLR 2019) with pytorch-ood's ``OutlierExposureLoss``.

    Every ID batch is paired with an equally large OOD batch labelled ``-1``: cross-entropy
    on the ID images, ``alpha`` × cross-entropy to the uniform distribution on the OOD ones.

    Args:
        source: ``noise`` (uniform noise images), ``natural`` (patches of natural photographs,
            ``pool`` images) or ``adv`` (adversarial examples of the batch, ``attack`` at ``eps``).
        alpha: weight of the uniform-target term (paper: 0.5).
    """

    source: str = "noise"
    alpha: float = 0.5
    eps: float = 8 / 255
    attack: str = "fgsm"
    pool: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.source not in OE_SOURCES:
            raise RobustoodError(f"unknown outlier-exposure source {self.source!r}; use one of {', '.join(OE_SOURCES)}")
        if not float(self.alpha) >= 0:
            raise RobustoodError(f"outlier-exposure alpha must be >= 0, got {self.alpha}")
        object.__setattr__(self, "eps", parse_eps(self.eps))
        if self.source == "natural" and (self.pool is None or len(self.pool) == 0):
            raise RobustoodError("outlier exposure with natural images needs a pool of images (pool=...)")
        if self.source == "adv":
            _ = self._attack  # validate now

    @cached_property
    def _loss(self) -> OutlierExposureLoss:
        return OutlierExposureLoss(alpha=float(self.alpha))

    @cached_property
    def _attack(self) -> Any:
        from ..attacks import build_attack

        return build_attack(self.attack, eps=self.eps)

    def outliers(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """An OOD batch shaped like ``x`` (no gradient through it)."""
        if self.source == "noise":
            return torch.rand(x.shape, device=x.device, dtype=x.dtype)
        if self.source == "natural":
            assert self.pool is not None
            idx = torch.randint(0, len(self.pool), (len(x),))
            return self.pool[idx].to(x.device, x.dtype, non_blocking=True)
        x_adv = self._attack(unwrap(model), x, y).detach()
        model.train()
        return x_adv

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_ood = self.outliers(model, x, y)
        logits = model(torch.cat([x, x_ood]))
        target = torch.cat([y, torch.full_like(y, -1)])
        return self._loss(logits, target), logits[: len(x)]
