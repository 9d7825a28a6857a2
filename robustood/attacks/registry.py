"""The attack registry, the validating constructor, spec strings, and backend dispatch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import RobustoodError
from ..utils import parse_eps
from .base import Attack, AttackOutput, _check_targeted, norm_label, parse_norm, resolve_target_class

__all__ = ["ATTACKS", "BACKENDS", "AttackInfo", "build_attack", "parse_attack_spec", "run_backend"]

BACKENDS = ("native", "art")


@dataclass(frozen=True)
class AttackInfo:
    """A registry entry: the norms an attack supports, its default steps, whether it may start randomly."""

    name: str
    description: str
    norms: tuple[float, ...]
    default_steps: int
    random_start: bool
    paper: str


ATTACKS: dict[str, AttackInfo] = {
    a.name: a
    for a in (
        AttackInfo(
            "fgsm",
            "Fast Gradient (Sign) Method: one step of size eps (sign of the gradient for L∞, normalised for L2)",
            (math.inf, 2.0),
            1,
            False,
            "Goodfellow et al., ICLR 2015, https://arxiv.org/abs/1412.6572",
        ),
        AttackInfo(
            "bim",
            "Basic Iterative Method: iterative FGSM from the clean input, projected on the eps ball",
            (math.inf, 2.0),
            10,
            False,
            "Kurakin et al., ICLR 2017 workshop, https://arxiv.org/abs/1607.02533",
        ),
        AttackInfo(
            "pgd",
            "Projected Gradient Descent: BIM from a uniform random start in the eps ball",
            (math.inf, 2.0),
            10,
            True,
            "Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083",
        ),
        AttackInfo(
            "ddn",
            "Decoupled Direction and Norm: minimal-L2 attack, bounded by eps",
            (2.0,),
            100,
            False,
            "Rony et al., CVPR 2019, https://arxiv.org/abs/1811.09600",
        ),
    )
}

_KW = {"gamma", "init_norm", "class_names"}


def build_attack(
    name: str | Any,
    *,
    eps: float | str | None = None,
    norm: str | float = "inf",
    steps: int | None = None,
    step_size: float | str | None = None,
    random_start: bool = True,
    targeted: str | int | None = None,
    backend: str = "native",
    seed: int = 0,
    **kw: Any,
) -> Attack:
    """Build a validated attack by registry name (``fgsm``, ``pgd``, ``bim``, ``ddn``).

    ``eps`` is the budget in [0, 1] pixel units (a float or text such as ``"8/255"``) in
    ``norm`` (``"inf"``/``"linf"`` or ``2``/``"l2"``). ``steps`` defaults per attack
    (FGSM 1, BIM/PGD 10, DDN 100), ``step_size`` to ``2.5·eps/steps`` (FGSM: ``eps``).
    ``random_start`` applies to PGD only. ``targeted``: ``None``, a class index or name
    (names need ``class_names=...`` here or :meth:`Attack.with_class_names`),
    ``"random"`` or ``"least-likely"``. ``backend``: ``"native"`` (default, fast) or
    ``"art"``. DDN also takes ``gamma`` (norm update, 0.05) and ``init_norm`` (1.0).
    A ready ART evasion attack object passed as ``name`` is wrapped as it is.

    Raises :class:`RobustoodError` for unknown names, bad budgets or unsupported norms.
    """
    if not isinstance(name, str):
        from ._art import ARTAttack, EvasionAttack

        if isinstance(name, EvasionAttack):
            return ARTAttack(name)  # type: ignore[return-value]
        raise RobustoodError(f"an attack is a registry name ({', '.join(ATTACKS)}) or an ART evasion attack object")
    key = name.strip().lower()
    if key not in ATTACKS:
        raise RobustoodError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    info = ATTACKS[key]
    unknown = set(kw) - _KW
    if unknown:
        raise RobustoodError(f"unknown option(s) for attack {key}: {', '.join(sorted(unknown))}")
    if eps is None:
        raise RobustoodError(f"attack {key} needs eps, e.g. eps=8/255")
    eps_v = parse_eps(eps)
    p = parse_norm(norm)
    if p not in info.norms:
        allowed = " or ".join(norm_label(n) for n in info.norms)
        raise RobustoodError(f"attack {key} supports {allowed}, not {norm_label(p)}; use norm=2 (--norm 2)")
    n_steps = info.default_steps if steps is None else int(steps)
    if key == "fgsm" and n_steps != 1:
        raise RobustoodError(f"fgsm takes exactly one step, got steps={steps}; use bim or pgd for more")
    if n_steps < 1:
        raise RobustoodError(f"steps must be a positive integer, got {steps}")
    alpha = None
    if step_size is not None:
        alpha = parse_eps(step_size) if isinstance(step_size, str) else float(step_size)
        if not (alpha > 0 and math.isfinite(alpha)):
            raise RobustoodError(f"step_size must be positive, got {step_size}")
    if backend not in BACKENDS:
        raise RobustoodError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    tgt = _check_targeted(targeted)
    if kw.get("class_names") is not None and tgt is not None and tgt not in ("random", "least-likely"):
        tgt = resolve_target_class(tgt, kw["class_names"])
    gamma = float(kw.get("gamma", 0.05))
    init_norm = float(kw.get("init_norm", 1.0))
    if not 0 < gamma < 1 or init_norm <= 0:
        raise RobustoodError(f"ddn needs 0 < gamma < 1 and init_norm > 0, got gamma={gamma}, init_norm={init_norm}")
    return Attack(
        name=key,
        eps=eps_v,
        norm=p,
        steps=n_steps,
        step_size=alpha,
        random_start=bool(random_start) and info.random_start,
        targeted=tgt,
        backend=backend,
        seed=int(seed),
        gamma=gamma,
        init_norm=init_norm,
    )


def parse_attack_spec(spec: str, **defaults: Any) -> Attack:
    """Build an attack from text ``NAME:EPS[:NORM][:key=value…]``.

    Examples: ``fgsm:2/255``, ``pgd:8/255``, ``pgd:0.5:l2``, ``pgd:8/255:steps=20:step_size=1/255``,
    ``fgsm:8/255:targeted=least-likely``. ``defaults`` are keyword arguments of
    :func:`build_attack` that the spec does not set (e.g. ``backend``, ``seed``).
    """
    parts = [p.strip() for p in str(spec).split(":")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise RobustoodError(f"invalid attack spec {spec!r}; use NAME:EPS[:NORM], e.g. fgsm:2/255 or pgd:0.5:l2")
    options: dict[str, Any] = dict(defaults)
    options["eps"] = parts[1]
    for part in parts[2:]:
        if "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
            key = key.replace("-", "_")
            if key == "steps":
                options[key] = _int(value, spec)
            elif key == "random_start":
                options[key] = value.lower() in ("1", "true", "yes", "on")
            elif key in ("step_size", "targeted", "backend", "gamma", "init_norm", "seed"):
                options[key] = _int(value, spec) if key == "seed" else value
                if key in ("gamma", "init_norm"):
                    options[key] = float(value)
            else:
                raise RobustoodError(f"unknown option {key!r} in attack spec {spec!r}")
        else:
            options["norm"] = part
    return build_attack(parts[0], **options)


def _int(value: str, spec: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RobustoodError(f"expected an integer in attack spec {spec!r}, got {value!r}") from None


def run_backend(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None):
    """Dispatch one batch to the attack's backend (model already in attack mode)."""
    if attack.backend == "art":
        from ._art import art_generate

        return art_generate(attack, model, x, y, target)
    gen = attack.generator(x.device)
    if attack.name == "ddn":
        from .ddn import ddn

        return ddn(
            model,
            x,
            y,
            steps=attack.steps,
            gamma=attack.gamma,
            init_norm=attack.init_norm,
            max_norm=attack.eps,
            target=target,
            generator=gen,
        )
    from .engine import pgd

    out: AttackOutput = pgd(
        model,
        x,
        y,
        eps=attack.eps,
        step_size=attack.alpha,
        steps=attack.steps,
        norm=attack.norm,
        random_init=attack.random_start,
        target=target,
        generator=gen,
    )
    return out
