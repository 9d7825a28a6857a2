"""Adversarial attacks: FGSM, BIM, PGD (ART's update rule, native or through ART), DDN, and
AutoAttack (APGD-CE, APGD-DLR, APGD-T, FAB-T, Square; the reference's algorithms, natively).

``build_attack(name, eps=...)`` or ``parse_attack_spec("pgd:8/255")`` gives a frozen
:class:`Attack`; call it as ``attack(model, x, y) -> x_adv`` with images in [0, 1], and
pass ``keys=`` (each input's own random streams, :class:`robustood.rng.Keys`) or ``generator=``
for reproducible random starts and targets. :func:`robustood.evaluate.run_attack` streams
a dataset through one attack and measures it; :class:`AttackMetrics` is its accumulator.

Layers (each module imports only those above it): ``base`` (the :class:`Attack` base
class, targets, the model-state guard), one module per family (``gradient``: FGSM / BIM /
PGD; ``ddn``; ``apgd``, ``fab``, ``square`` and ``autoattack``), ``masking`` (gradient-masking
checks), ``_art`` (the only module importing ART, loaded on first use), then
``registry`` and ``metrics``.

>>> from robustood.attacks import build_attack          # doctest: +SKIP
>>> x_adv = build_attack("pgd", eps=8 / 255)(model, x, y)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .apgd import APGD
from .autoattack import AutoAttack
from .base import TARGET_MODES, Attack, AttackOutput, attack_mode, resolve_target_class
from .ddn import DDN
from .fab import FAB
from .gradient import GradientAttack
from .metrics import AttackMetrics, AttackResult, AttackSamples
from .registry import ATTACKS, BACKENDS, AttackInfo, build_attack, parse_attack_spec
from .square import Square

if TYPE_CHECKING:
    from ._art import ARTAttack

__all__ = [
    "APGD",
    "ATTACKS",
    "BACKENDS",
    "DDN",
    "FAB",
    "TARGET_MODES",
    "ARTAttack",
    "Attack",
    "AttackInfo",
    "AttackMetrics",
    "AttackOutput",
    "AttackResult",
    "AttackSamples",
    "AutoAttack",
    "GradientAttack",
    "Square",
    "attack_mode",
    "build_attack",
    "parse_attack_spec",
    "resolve_target_class",
]


def __getattr__(name: str) -> Any:
    """``ARTAttack`` is loaded on first use, so that importing this package does not import ART."""
    if name == "ARTAttack":
        from ._art import ARTAttack

        return ARTAttack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
