"""Adaptive attacks on an OOD detector's score (Azizmalayeri et al., NeurIPS 2022).

An attacker who knows the detector perturbs in-distribution inputs to *raise* their OOD
score (so they are rejected) and OOD inputs to *lower* it (so they pass as ID), within an
eps ball of the attack's norm and the [0, 1] box. :class:`DetectorAttack` does this with
PGD on :func:`~robustood.detectors.differentiable.differentiable_score`, on the gradient
engine's update rule (:func:`robustood.attacks.objective.ascend`: the step, projection and
random start of :func:`robustood.attacks.gradient.pgd`), keeping per sample the iterate
with the worst score for the detector (the clean input among them), so the attacked score
is never better for the detector than the clean one.

Specs follow the attack grammar: ``pgd:8/255`` (L∞, 10 steps, step 2.5·eps/steps, random
start), ``pgd:0.5:l2``, ``pgd:8/255:steps=40``, ``bim:8/255`` (no random start) or
``fgsm:8/255`` (one step of size eps).

>>> atk = parse_detector_attack("pgd:8/255")                          # doctest: +SKIP
>>> x_adv = atk(model, det, x_ood, raise_score=False)                  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..attacks.base import Attack, attack_mode, check_keys
from ..attacks.objective import ascend
from ..errors import RobustoodError
from ..rng import Keys
from ..utils import format_eps
from .differentiable import differentiable_score

__all__ = ["DETECTOR_ATTACKS", "DetectorAttack", "parse_detector_attack", "parse_detector_attacks"]

DETECTOR_ATTACKS = ("pgd", "bim", "fgsm")
"""Attack names a detector attack accepts (the gradient family)."""

SIDES = ("out", "in", "both")
"""Which inputs are attacked: only the OOD inputs, only the ID inputs, or both."""


@dataclass(frozen=True)
class DetectorAttack:
    """A gradient attack (``pgd``, ``bim``, ``fgsm``) aimed at a detector's score instead of the classifier.

    ``attack`` carries the budget ``eps`` (pixel units), ``norm``, ``steps``, step size
    (:attr:`~robustood.attacks.base.Attack.alpha`), ``random_start`` and ``seed``, exactly as
    for the classifier attacks; build it with :func:`parse_detector_attack`.
    """

    attack: Attack

    @property
    def eps(self) -> float:
        return float(self.attack.eps)

    @property
    def label(self) -> str:
        """``pgd-linf``: the attack's label."""
        return self.attack.label

    @property
    def key(self) -> str:
        """``pgd-linf@8/255``: label and budget, as table columns show them."""
        return f"{self.label}@{format_eps(self.eps)}"

    @property
    def seed(self) -> int:
        return int(self.attack.seed)

    def __call__(
        self,
        model: nn.Module,
        detector: Any,
        x: torch.Tensor,
        *,
        raise_score: bool,
        generator: torch.Generator | None = None,
        keys: Keys | None = None,
    ) -> torch.Tensor:
        """Attacked images for ``x`` (``B×C×H×W`` in [0, 1]): ``raise_score=True`` pushes the
        detector's score up (ID inputs made to look OOD), ``False`` down (OOD inputs made to
        look ID). Within ``eps`` of ``x`` in the attack's norm, in [0, 1], without a graph."""
        return self.run(model, detector, x, raise_score=raise_score, generator=generator, keys=keys)[0]

    def run(
        self,
        model: nn.Module,
        detector: Any,
        x: torch.Tensor,
        *,
        raise_score: bool,
        generator: torch.Generator | None = None,
        keys: Keys | None = None,
        clean_scores: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attacked images and their scores ``[B]`` (see :meth:`__call__`): the differentiable
        scores, equal to the detector's own; ``clean_scores``, the detector's scores of ``x`` if
        the caller has them, save a forward pass and are returned where ``x`` itself is kept.
        The random start comes from ``keys`` (one per input: each input's own stream, whatever
        its batch) if given, else from ``generator``."""
        keys = check_keys(keys, generator, x)
        if generator is not None and generator.device.type != x.device.type:
            raise RobustoodError(
                f"the generator is on {generator.device.type} but x is on {x.device.type}; "
                "use torch.Generator(device=x.device)"
            )
        sign = 1.0 if raise_score else -1.0
        a = self.attack

        def objective(xb: torch.Tensor) -> torch.Tensor:
            return sign * differentiable_score(detector, model, xb)

        with attack_mode(model):
            x_adv, values = ascend(
                objective,
                x.detach(),
                eps=float(a.eps),
                step_size=a.alpha,
                steps=int(a.steps) if a.iterative else 1,
                norm=a.norm,
                random_init=bool(a.random_start),
                generator=generator,
                keys=keys,
                start_values=sign * clean_scores.to(x.device) if clean_scores is not None else None,
            )
        return x_adv, sign * values


def parse_detector_attack(spec: Any, *, seed: int = 0) -> DetectorAttack:
    """A :class:`DetectorAttack` from a spec (``pgd:8/255``, ``pgd:0.5:l2:steps=20``), an
    :class:`~robustood.attacks.base.Attack` of the gradient family, or a :class:`DetectorAttack`."""
    from ..attacks import parse_attack_spec

    if isinstance(spec, DetectorAttack):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        name = text.split(":", 1)[0].strip().lower()
        if name not in DETECTOR_ATTACKS:
            raise RobustoodError(
                f"detector attack {text!r}: use {', '.join(DETECTOR_ATTACKS)} with a budget, e.g. pgd:8/255"
            )
        if ":" not in text:
            raise RobustoodError(f"detector attack {text!r} needs a budget, e.g. {name}:8/255")
        attack = parse_attack_spec(text, seed=seed)
    elif isinstance(spec, Attack):
        attack = spec
    else:
        raise RobustoodError(
            f"a detector attack is a spec such as 'pgd:8/255' or a gradient attack, got {type(spec).__name__}"
        )
    if attack.name not in DETECTOR_ATTACKS:
        raise RobustoodError(f"detector attacks use {', '.join(DETECTOR_ATTACKS)}, got {attack.name!r}")
    if attack.targeted is not None:
        raise RobustoodError("a detector attack has no target class; leave out targeted=")
    if attack.backend != "native":
        raise RobustoodError("detector attacks run on the native engine; leave out backend=")
    return DetectorAttack(attack)


def parse_detector_attacks(specs: Any, *, seed: int = 0) -> list[DetectorAttack]:
    """Detector attacks from specs, comma lists (``"pgd:2/255,pgd:8/255"``) or objects; duplicates refused."""
    items = [specs] if isinstance(specs, (str, DetectorAttack, Attack)) else list(specs or ())
    out: list[DetectorAttack] = []
    for item in items:
        parts = [p.strip() for p in item.split(",")] if isinstance(item, str) else [item]
        for part in parts:
            if isinstance(part, str) and not part:
                raise RobustoodError(f"empty detector attack in {item!r}; use e.g. pgd:8/255")
            atk = parse_detector_attack(part, seed=seed)
            if atk in out:
                raise RobustoodError(f"detector attack {atk.key} is given twice")
            out.append(atk)
    return out
