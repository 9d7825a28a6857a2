"""Adversarial attacks: FGSM, BIM, PGD (ART's update rule, native or through ART) and DDN.

``build_attack(name, eps=...)`` or ``parse_attack_spec("pgd:8/255")`` gives a frozen
:class:`Attack`; call it as ``attack(model, x, y) -> x_adv`` with images in [0, 1].
:func:`run_attack` streams a dataset through one attack and measures it.

>>> from robustood.attacks import build_attack          # doctest: +SKIP
>>> x_adv = build_attack("pgd", eps=8 / 255)(model, x, y)  # doctest: +SKIP
"""

from __future__ import annotations

from .base import TARGET_MODES, Attack, AttackOutput, attack_mode, resolve_target_class
from .metrics import AttackResult, AttackSamples, run_attack
from .registry import ATTACKS, BACKENDS, AttackInfo, build_attack, parse_attack_spec

__all__ = [
    "ATTACKS",
    "BACKENDS",
    "TARGET_MODES",
    "Attack",
    "AttackInfo",
    "AttackOutput",
    "AttackResult",
    "AttackSamples",
    "attack_mode",
    "build_attack",
    "parse_attack_spec",
    "resolve_target_class",
    "run_attack",
]
