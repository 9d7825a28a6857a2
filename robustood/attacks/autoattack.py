"""AutoAttack, standard version: APGD-CE, then APGD-T, then FAB-T, then Square, per-sample worst case.

Croce & Hein, ICML 2020 (https://arxiv.org/abs/2003.01690); the reference implementation
is ``fra31/auto-attack`` (``pyautoattack`` on the package index), whose standard version
this follows: APGD-CE (100 iterations, 1 restart), APGD-T (targeted DLR, the 9 most likely
wrong classes, 100 iterations each), FAB-T (9 target classes, 100 iterations each) and
Square (5,000 queries, ``p_init = 0.8``), each run only on the inputs every earlier attack
failed on; an input is robust only if it survives all four, and its adversarial example is
the first one found. As in the reference, each attack starts its random stream from the
same seed (here one number drawn from the call's generator); with keys, each component
draws from each input's own streams, named after the component.

:func:`autoattack` also returns which attack broke each input (``-1``: none), so a report
can say when the black-box Square attack succeeded where the gradient attacks failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RobustoodError
from ..rng import Keys
from .apgd import apgd
from .base import Attack, AttackOutput, call_seed
from .fab import fab_targeted
from .square import square

__all__ = ["STANDARD", "AutoAttack", "autoattack"]

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
_KNOWN = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")


def run_sub_attack(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: float,
    seed: int,
    n_iter: int = 100,
    n_queries: int = 5000,
    n_target_classes: int = 9,
    p_init: float = 0.8,
    keys: Keys | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One AutoAttack component on ``x`` (all classified correctly): ``(x_adv, robust)``; with
    ``keys`` (one per input) its draws come from the inputs' streams under ``name``."""
    stream = ("autoattack", name)
    if name in ("apgd-ce", "apgd-dlr", "apgd-t"):
        loss = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted"}[name]
        x_adv, robust, _ = apgd(
            model,
            x,
            y,
            eps=eps,
            norm=norm,
            n_iter=n_iter,
            loss=loss,
            n_target_classes=n_target_classes,
            seed=seed,
            keys=keys,
            stream=stream,
        )
        return x_adv, robust
    if name == "fab-t":
        return fab_targeted(model, x, y, eps=eps, norm=norm, n_iter=n_iter, n_target_classes=n_target_classes)
    if name == "square":
        return square(
            model, x, y, eps=eps, norm=norm, n_queries=n_queries, p_init=p_init, seed=seed, keys=keys, stream=stream
        )
    raise RobustoodError(f"unknown AutoAttack component {name!r}; use {', '.join(_KNOWN)}")


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: float = math.inf,
    attacks: Sequence[str] = STANDARD,
    seed: int = 0,
    n_iter: int = 100,
    n_queries: int = 5000,
    n_target_classes: int = 9,
    p_init: float = 0.8,
    keys: Keys | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``attacks`` in turn on the inputs still robust; returns ``(x_adv, robust, broken_by)``.

    ``x`` is ``B×C×H×W`` in [0, 1]; every component draws from ``seed`` (the reference's
    order) or, with ``keys`` (one per input), from the inputs' own streams. ``broken_by[i]``
    is the position in ``attacks`` of the attack that broke input ``i`` (``-1`` if none did
    or it was misclassified already).
    """
    x = x.detach()
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    x_adv = x.clone()
    broken_by = torch.full_like(y, -1)
    for pos, name in enumerate(attacks):
        ind = robust.nonzero()[:, 0]
        if ind.numel() == 0:
            break
        adv, _ = run_sub_attack(
            name,
            model,
            x[ind],
            y[ind],
            eps=eps,
            norm=norm,
            seed=seed,
            n_iter=n_iter,
            n_queries=n_queries,
            n_target_classes=n_target_classes,
            p_init=p_init,
            keys=keys.to(x.device)[ind] if keys is not None else None,
        )
        with torch.no_grad():  # as the reference: the verdict is the model's prediction on the returned point
            fooled = model(adv).argmax(1) != y[ind]
        hit = ind[fooled]
        robust[hit] = False
        x_adv[hit] = adv[fooled]
        broken_by[hit] = pos
    return x_adv, robust, broken_by


@dataclass(frozen=True)
class AutoAttack(Attack):
    """AutoAttack (``name="autoattack"``), standard version, L∞ or L2.

    ``steps`` is the iterations of APGD and FAB (100), ``n_queries`` Square's queries (5,000),
    ``n_target_classes`` the targets of APGD-T and FAB-T (9, capped at the number of classes
    − 1), ``p_init`` Square's initial square size (0.8). Build it with
    :func:`robustood.attacks.build_attack` (``"autoattack"`` or ``"aa"``).
    """

    n_queries: int = 5000
    n_target_classes: int = 9
    p_init: float = 0.8

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        x_adv, _, broken_by = autoattack(
            model,
            x,
            y,
            eps=self.eps,
            norm=self.norm,
            seed=call_seed(generator, keys, x.device),
            n_iter=self.steps,
            n_queries=self.n_queries,
            n_target_classes=self.n_target_classes,
            p_init=self.p_init,
            keys=keys,
        )
        return AttackOutput(x_adv, None, None, broken_by)
