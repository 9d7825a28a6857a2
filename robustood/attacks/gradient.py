"""The gradient family: FGSM, BIM and PGD with ART's update rule, natively on device tensors.

ART's ``ProjectedGradientDescentPyTorch`` spends most of its time outside the gradient
(parameter gradients, NumPy random starts, host-to-device scalar copies, blocking NaN
checks, a success-rate pass for a log line). This module performs exactly its update

    g      = ∇ₓ CE(f(x_t), y)           (negated for a targeted attack; NaN → 0)
    d      = sign(g)  (L∞)   or   g / ‖g‖₂  (L2; 0 where g = 0)
    x'     = clip(x_t + α·d, 0, 1)
    x_t+1  = x₀ + Π_eps(x' − x₀)         (L∞: clamp to ±eps; L2: rescale to ‖·‖₂ ≤ eps)

with the same random start (uniform in the L∞ cube / uniform in the L2 ball, clipped to
[0, 1]; from each input's own stream ``"pgd-start"`` when the call has keys), keeping
every tensor on the input's device and taking gradients with respect to the input only.
FGSM is one step with ``α = eps`` from ``x₀``; BIM is PGD without a random start.
``tests/test_attacks.py`` checks the result equals ART's.

:class:`GradientAttack` is the :class:`~robustood.attacks.base.Attack` of the three
(``backend="art"`` runs ART's own objects through :mod:`robustood.attacks._art`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..rng import Keys
from .base import Attack, AttackOutput

__all__ = ["GradientAttack", "pgd", "project", "random_start", "step_direction"]


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def step_direction(grad: torch.Tensor, norm: float) -> torch.Tensor:
    """The unit step of a gradient: its sign (L∞) or its L2-normalised value (0 where the gradient is 0)."""
    if math.isinf(norm):
        return grad.sign()
    q = grad.flatten(1).norm(p=2, dim=1)
    inv = torch.where(q == 0, q, 1.0 / q)
    return grad * _per_sample(inv, grad)


def project(delta: torch.Tensor, eps: float, norm: float) -> torch.Tensor:
    """Project perturbations ``B×…`` onto the eps ball of ``norm`` (ART's ``_projection``)."""
    if math.isinf(norm):
        return delta.clamp(-eps, eps)
    n = delta.flatten(1).norm(p=2, dim=1)
    scale = torch.where(n == 0, n, torch.clamp(eps / n, max=1.0))
    return delta * _per_sample(scale, delta)


def random_start(
    x: torch.Tensor,
    eps: float,
    norm: float,
    generator: torch.Generator | None = None,
    keys: Keys | None = None,
    stream: tuple[object, ...] = ("pgd-start",),
) -> torch.Tensor:
    """A point drawn uniformly from the eps ball around each input, clipped to [0, 1].

    L∞: uniform in ``[−eps, eps]`` per pixel; L2: Gaussian direction with radius
    ``eps · F(‖a‖²)^{1/d}`` (``F`` the χ²_d CDF, so the radius is ``eps · U^{1/d}``), the
    distribution of ART's ``random_sphere``, drawn on the device. With ``keys`` (one per
    input) the numbers come from each input's ``stream``, else from ``generator``.
    """
    shape = tuple(x.shape[1:])
    if math.isinf(norm):
        if keys is not None:
            noise = keys.uniform(shape, *stream, dtype=x.dtype)
        else:
            noise = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        noise = noise.mul_(2 * eps).sub_(eps)
    else:
        d = x[0].numel()
        if keys is not None:
            a = keys.normal(shape, *stream, dtype=torch.float64)
        else:
            a = torch.randn(x.shape, device=x.device, dtype=torch.float64, generator=generator)
        s2 = a.flatten(1).pow(2).sum(1)
        radius = torch.special.gammainc(torch.full_like(s2, d / 2.0), s2 / 2.0).pow(1.0 / d) * eps
        noise = (a * _per_sample(radius / s2.sqrt(), a)).to(x.dtype)
    return (x + noise).clamp_(0.0, 1.0)


def _adversarial(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: float = math.inf,
    random_init: bool = False,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
    keys: Keys | None = None,
) -> AttackOutput:
    """Run ``steps`` projected gradient steps from ``x`` (or a random / given ``start``).

    ``x`` is ``B×C×H×W`` in [0, 1], ``y`` the labels ``[B]``; with ``target`` the attack
    descends the cross-entropy towards those classes. The random start comes from ``keys``
    (one per input) if given, else from ``generator``. ``start`` (a perturbation of
    ``x``'s shape) replaces the random draw, e.g. to reproduce another implementation's
    start. The model must already be in the state it should be attacked in (see
    :func:`robustood.attacks.base.attack_mode`). Returns the adversarial images and,
    per sample, the first iteration whose iterate was adversarial (``-1`` if none).
    """
    x0 = x.detach()
    labels = target if target is not None else y
    if start is not None:
        x_adv = (x0 + start.to(x0)).clamp_(0.0, 1.0)
    elif random_init:
        x_adv = random_start(x0, eps, norm, generator, keys)
    else:
        x_adv = x0
    first = torch.full((x0.shape[0],), -1, dtype=torch.long, device=x0.device)
    for k in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        # mean, as ART's loss; with keys summed (the same direction), so that an input's gradient,
        # to the last bit, does not depend on the batch size
        loss = F.cross_entropy(logits, labels, reduction="sum" if keys is not None else "mean")
        (grad,) = torch.autograd.grad(loss, x_adv)
        first = torch.where((first < 0) & _adversarial(logits.detach(), y, target), k, first)
        if target is not None:
            grad = grad.neg()
        grad = grad.nan_to_num(nan=0.0, posinf=math.inf, neginf=-math.inf)
        with torch.no_grad():
            x_next = (x_adv + step_size * step_direction(grad, norm)).clamp_(0.0, 1.0)
            x_adv = x0 + project(x_next - x0, eps, norm)
    with torch.no_grad():
        x_adv = x_adv.detach().clamp_(0.0, 1.0)
    return AttackOutput(x_adv, target, first)


@dataclass(frozen=True)
class GradientAttack(Attack):
    """FGSM, BIM or PGD (``name``): :func:`pgd` natively, or ART's own attack objects with
    ``backend="art"``. Build it with :func:`robustood.attacks.build_attack`."""

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        return pgd(
            model,
            x,
            y,
            eps=self.eps,
            step_size=self.alpha,
            steps=self.steps,
            norm=self.norm,
            random_init=self.random_start,
            target=target,
            generator=generator,
            keys=keys,
        )
