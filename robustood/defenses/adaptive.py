"""An adaptive attack on feature squeezing: fool the classifier and the squeezers at once.

He et al., "Adversarial example defenses: ensembles of weak defenses are not strong",
WOOT 2017. Feature squeezing (:mod:`robustood.defenses.squeeze`) flags an input when the
softmax of a squeezed version moves far (L1) from the softmax of the input. An attacker who
knows it wants the input misclassified *and* every squeezed version predicting the same
wrong class (then the softmaxes agree and the score stays under the threshold). Per sample,
with ``m(z, c) = z_c − max_{j≠c} z_j`` the logit margin of class ``c``, ``y`` the label and
``ŷ`` the best wrong class, PGD (the gradient engine's step, projection and random start,
:func:`robustood.attacks.objective.ascend`) ascends

    −m(f(x), y)                                                  while x is classified y,
    min(−m(f(x), y), κ) + λ · Σ_s min(m(f(s(x)), ŷ), κ)        once it is misclassified,

(logit margins, not softmax distances: a saturated softmax has no gradient exactly where the
two predictions disagree) and keeps per sample the best iterate by the attacker's real goal:
misclassified first, then the lowest squeezing score.
Gradients through the squeezers: bit-depth rounding is passed straight through (its forward
value is the rounded image, its backward the identity, BPDA); the median filter is
differentiated directly (the gradient reaches the pixel the sort selects); resampling is
differentiable as it is. The detector that measures the result is the unchanged
:class:`~robustood.defenses.FeatureSqueezingDetector`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.base import Attack, AttackOutput, norm_label
from ..attacks.objective import ascend
from ..errors import RobustoodError
from ..rng import Keys
from .squeeze import BitDepth, FeatureSqueezingDetector, Squeezer

__all__ = ["AdaptiveSqueezeAttack", "adaptive_squeeze_attack", "differentiable_squeeze"]


def differentiable_squeeze(squeezer: Squeezer, x: torch.Tensor) -> torch.Tensor:
    """``squeezer(x)`` with a gradient: straight-through for bit-depth rounding, exact otherwise."""
    if isinstance(squeezer, BitDepth):
        return x + (squeezer(x.detach()) - x).detach()
    return squeezer(x)


@dataclass(frozen=True)
class AdaptiveSqueezeAttack(Attack):
    """PGD / BIM / FGSM (``name``) on the classifier's loss minus ``weight`` times the
    feature-squeezing score, through ``squeezers`` (see the module docstring).

    Build it with :func:`adaptive_squeeze_attack`. Its label is ``adaptive-pgd-linf``, so its
    rows stand next to the plain attack's ``pgd-linf`` rows.
    """

    squeezers: tuple[Squeezer, ...] = ()
    weight: float = 1.0
    kappa: float = 5.0

    @property
    def label(self) -> str:
        return f"adaptive-{self.name}-{norm_label(self.norm)}"

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        squeezers, weight, kappa = self.squeezers, float(self.weight), float(self.kappa)

        def objective(xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = model(xb).float()
            margin, adv_class = _margin(logits, y)
            p = F.softmax(logits, dim=1)
            agree, distances = [], []
            for s in squeezers:
                out = model(differentiable_squeeze(s, xb)).float()
                distances.append((p - F.softmax(out, dim=1)).abs().sum(1))
                # the squeezed input should predict the adversarial class too (a logit margin: no
                # softmax saturation, so the gradient survives when the two predictions disagree)
                agree.append(_margin_for(out, adv_class).clamp(max=kappa))
            score = torch.stack(distances).amax(0)
            surrogate = margin.clamp(max=kappa) + weight * torch.stack(agree).sum(0)
            loss = torch.where(margin > 0, surrogate, margin)
            # the best iterate: misclassified first (rank in [1, 3]), then the lowest squeezing score
            rank = torch.where(margin > 0, 3.0 - score, margin.clamp(max=0.0))
            return loss, rank

        x_adv, _ = ascend(
            objective,
            x,
            eps=float(self.eps),
            step_size=self.alpha,
            steps=int(self.steps) if self.iterative else 1,
            norm=self.norm,
            random_init=bool(self.random_start),
            generator=generator,
            keys=keys,
        )
        return AttackOutput(x_adv, None, None)


def adaptive_squeeze_attack(
    attack: Attack, detector: FeatureSqueezingDetector, *, weight: float = 1.0, kappa: float = 5.0
) -> Attack:
    """The adaptive version of a gradient attack (``fgsm``, ``bim``, ``pgd``; same budget, norm,
    steps, step size, random start and seed) against ``detector``'s squeezers.

    ``kappa``: the logit margin the attack keeps (the input misclassified by at least that, the
    squeezed inputs predicting the same wrong class by at least that); ``weight``: the weight of
    the squeezed inputs' agreement against the input's own margin.
    """
    if attack.name not in ("fgsm", "bim", "pgd") or attack.targeted is not None:
        raise RobustoodError(f"the adaptive squeezing attack adapts untargeted fgsm, bim or pgd, got {attack.label}")
    for value, what in ((weight, "weight"), (kappa, "kappa")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise RobustoodError(f"the adaptive attack's {what} must be a finite number ≥ 0, got {value!r}")
    return AdaptiveSqueezeAttack(
        name=attack.name,
        eps=attack.eps,
        norm=attack.norm,
        steps=attack.steps,
        step_size=attack.step_size,
        random_start=attack.random_start,
        seed=attack.seed,
        squeezers=tuple(detector.squeezers),
        weight=float(weight),
        kappa=float(kappa),
    )


def _margin(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``max_{j≠y} z_j − z_y`` (positive: misclassified) and the best wrong class."""
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf)
    best = other.argmax(1)
    return other.gather(1, best[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1), best


def _margin_for(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """``z_cls − max_{j≠cls} z_j``: how far ``cls`` leads (positive: it is the prediction)."""
    other = logits.masked_fill(F.one_hot(cls, logits.shape[1]).bool(), -math.inf).amax(1)
    return logits.gather(1, cls[:, None]).squeeze(1) - other
