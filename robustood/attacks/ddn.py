"""Decoupled Direction and Norm (DDN): a minimal-L2 attack, natively on device tensors.

Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger: "Decoupled Direction and Norm
for Efficient Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019
(https://arxiv.org/abs/1811.09600). Not in ART; ``robustood.attacks._art`` wraps this
function as an ART ``EvasionAttack`` so both backends run the same algorithm. :class:`DDN`
is its :class:`~robustood.attacks.base.Attack`.

Each step takes a normalised gradient step of cosine-annealed size on the perturbation
``δ`` (direction), then rescales ``δ`` to a norm ``ε_k`` that shrinks by ``(1 − γ)`` when
the current point is adversarial and grows by ``(1 + γ)`` when it is not (norm), capped
by the budget ``max_norm`` and by the largest useful norm ``‖max(x, 1 − x)‖₂``. The
smallest adversarial ``δ`` seen is returned; an input never made adversarial gets the
last iterate (within ``max_norm``, in [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..rng import Keys
from .base import Attack, AttackOutput

__all__ = ["DDN", "ddn"]


def ddn(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    gamma: float = 0.05,
    init_norm: float = 1.0,
    max_norm: float | None = None,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keys: Keys | None = None,
) -> AttackOutput:
    """DDN on a batch ``x`` (``B×C×H×W`` in [0, 1]) with labels ``y`` (``[B]``).

    ``max_norm`` is the L2 budget in pixel units (``None``: unbounded); with ``target``
    the attack succeeds when the prediction equals the target. Returns the adversarial
    images and per sample the first iteration whose iterate was adversarial (``-1`` if
    none). The random direction used where a gradient is exactly 0 comes from ``keys`` (one
    per input, stream ``("ddn-noise", step)``) if given, else from ``generator``.
    """
    x0 = x.detach()
    b = x0.shape[0]
    view = (-1, *([1] * (x0.dim() - 1)))
    labels = target if target is not None else y
    sign = 1.0 if target is not None else -1.0  # loss to minimise: ±CE
    delta = torch.zeros_like(x0)
    eps_k = torch.full((b,), float(init_norm), device=x0.device, dtype=x0.dtype)
    worst = torch.maximum(x0, 1 - x0).flatten(1).norm(p=2, dim=1)
    cap = worst if max_norm is None else worst.clamp(max=float(max_norm))
    eps_k = torch.minimum(eps_k, cap)
    best_l2 = torch.full((b,), math.inf, device=x0.device, dtype=x0.dtype)
    best = torch.zeros_like(x0)
    first = torch.full((b,), -1, dtype=torch.long, device=x0.device)
    for k in range(steps):
        alpha = 0.01 + (1.0 - 0.01) * (1 + math.cos(math.pi * k / steps)) / 2  # cosine annealing 1 → 0.01
        delta = delta.detach().requires_grad_(True)
        logits = model(x0 + delta)
        loss = sign * F.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            pred = logits.argmax(1)
            is_adv = pred == target if target is not None else pred != y
            first = torch.where((first < 0) & is_adv, k, first)
            l2 = delta.flatten(1).norm(p=2, dim=1)
            better = is_adv & (l2 < best_l2)
            best_l2 = torch.where(better, l2, best_l2)
            best = torch.where(better.view(view), delta, best)
            g_norm = grad.flatten(1).norm(p=2, dim=1)
            zero = (g_norm == 0).view(view)
            unit = grad / g_norm.clamp_min(1e-30).view(view)
            if keys is None:
                noise = torch.randn(grad.shape, device=grad.device, dtype=grad.dtype, generator=generator)
                grad = torch.where(zero, noise, unit)
            elif bool(zero.any()):  # hashing a whole batch costs more than randn: only when needed
                grad = torch.where(zero, keys.normal(tuple(grad.shape[1:]), "ddn-noise", k, dtype=grad.dtype), unit)
            else:
                grad = unit
            delta = delta - alpha * grad
            eps_k = torch.minimum(eps_k * (1 - (2 * is_adv.to(eps_k.dtype) - 1) * gamma), cap)
            d_norm = delta.flatten(1).norm(p=2, dim=1)
            delta = delta * (eps_k / d_norm.clamp_min(1e-12)).view(view)
            delta = (x0 + delta).clamp_(0.0, 1.0) - x0
    with torch.no_grad():
        # the last iterate counts too
        logits = model(x0 + delta)
        pred = logits.argmax(1)
        is_adv = pred == target if target is not None else pred != y
        first = torch.where((first < 0) & is_adv, steps, first)
        l2 = delta.flatten(1).norm(p=2, dim=1)
        better = is_adv & (l2 < best_l2)
        best = torch.where(better.view(view), delta, best)
        found = torch.isfinite(best_l2) | better
        out = torch.where(found.view(view), best, delta)
        x_adv = (x0 + out).clamp_(0.0, 1.0)
    return AttackOutput(x_adv, target, first)


@dataclass(frozen=True)
class DDN(Attack):
    """DDN bounded by ``eps`` in L2 (``steps``, ``gamma``, ``init_norm``): :func:`ddn` natively,
    or as an ART ``EvasionAttack`` with ``backend="art"``. Build it with
    :func:`robustood.attacks.build_attack`."""

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        return ddn(
            model,
            x,
            y,
            steps=self.steps,
            gamma=self.gamma,
            init_norm=self.init_norm,
            max_norm=self.eps,
            target=target,
            generator=generator,
            keys=keys,
        )
