"""PGD on any per-sample objective: the gradient engine's update rule with a custom loss.

:func:`~robustood.attacks.gradient.pgd` ascends the classifier's cross-entropy;
adaptive attacks ascend something else (a detector's score, the classifier's loss plus a
term that keeps a defense quiet). :func:`ascend` runs the same update

    g      = ∇ₓ Σ_b objective(x_t)_b      (NaN → 0)
    d      = sign(g)  (L∞)   or   g / ‖g‖₂  (L2; 0 where g = 0)
    x'     = clip(x_t + α·d, 0, 1)
    x_t+1  = x₀ + Π_eps(x' − x₀)

from the same random start (:func:`~robustood.attacks.gradient.random_start`), and keeps,
per sample, the best iterate seen (the start point and the clean input included), so the
objective of the returned input is never below the clean input's. Each step costs one
forward and one backward pass of the objective, like the plain loop; the best iterate is
tracked from the objective values the step computes anyway, plus one forward pass for
the last iterate (and one for the clean input after a random start, unless the caller
passes its objective as ``start_values``). The plain loop's scoring pass of its result costs
the same forward pass as the last iterate's here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..rng import Keys
from .gradient import _per_sample, project, random_start, step_direction

__all__ = ["ascend"]


def ascend(
    objective: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: float = math.inf,
    random_init: bool = False,
    generator: torch.Generator | None = None,
    keys: Keys | None = None,
    keep_best: bool = True,
    start_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``objective(x') [B]`` over ``x'`` in the eps ball of ``norm`` around ``x`` and in [0, 1].

    ``x`` is ``B×C×H×W`` in [0, 1]; ``objective`` maps a batch to one value per sample and must
    keep the autograd graph to its input (samples must not interact, e.g. a model in
    evaluation mode). It may return a pair ``(loss, rank)``: the gradient follows ``loss``, the
    best iterate is chosen by ``rank`` (a surrogate ascended, the attacker's real goal kept).
    The random start comes from ``keys`` (one per input, stream ``"pgd-start"``) if given,
    else from ``generator``. The caller puts the model in the state it is attacked in
    (:func:`~robustood.attacks.base.attack_mode`). With ``keep_best`` the returned input is,
    per sample, the iterate of highest objective (the clean input among them); otherwise the
    last iterate. ``start_values``: the objective (or rank) at ``x`` if the caller has it
    already (it saves the forward pass at the clean input). Returns the inputs (detached, in
    the ball and the box) and their objective (or rank) values ``[B]``.
    """
    x0 = x.detach()
    if start_values is not None:
        start_values = start_values.detach().float().to(x0.device)
    if eps == 0 or steps < 1 or x0.shape[0] == 0:
        if start_values is not None:
            return x0.clone(), start_values
        with torch.no_grad():
            return x0.clone(), _rank(objective(x0))
    x_adv = random_start(x0, eps, norm, generator, keys) if random_init else x0
    best_x = best_v = None
    if keep_best and random_init:
        if start_values is not None:
            best_x, best_v = x0.clone(), start_values
        else:
            with torch.no_grad():
                best_x, best_v = x0.clone(), _rank(objective(x0))
    with torch.enable_grad():
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            out = objective(x_adv)
            values = out[0] if isinstance(out, tuple) else out
            (grad,) = torch.autograd.grad(values.sum(), x_adv)
            if keep_best:
                best_x, best_v = _keep(best_x, best_v, x_adv.detach(), _rank(out))
            grad = grad.nan_to_num(nan=0.0, posinf=math.inf, neginf=-math.inf)
            with torch.no_grad():
                x_next = (x_adv + step_size * step_direction(grad, norm)).clamp_(0.0, 1.0)
                x_adv = x0 + project(x_next - x0, eps, norm)
    with torch.no_grad():
        x_adv = x_adv.detach().clamp_(0.0, 1.0)
        last = _rank(objective(x_adv))
    if not keep_best:
        return x_adv, last
    return _keep(best_x, best_v, x_adv, last)


def _rank(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The value an iterate is ranked by: the objective, or the ``rank`` of a ``(loss, rank)`` pair."""
    return (out[1] if isinstance(out, tuple) else out).detach().float()


def _keep(
    best_x: torch.Tensor | None, best_v: torch.Tensor | None, x: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the input of higher objective (ties keep the earlier one)."""
    if best_x is None or best_v is None:
        return x.clone(), v.clone()
    better = v > best_v
    return torch.where(_per_sample(better, x), x, best_x), torch.where(better, v, best_v)
