"""The top of ``robustood.attacks``: the registry, the validating constructor and attack spec strings.

Adding an attack takes one module with an :class:`~robustood.attacks.base.Attack` subclass
(its ``_run``) and one :class:`AttackInfo` line in :data:`ATTACKS`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..errors import RobustoodError
from ..spec import as_bool, as_float, as_int, parse_spec
from ..utils import check_seed, parse_eps
from .apgd import APGD
from .autoattack import AutoAttack
from .base import Attack, _check_targeted, norm_label, parse_norm, resolve_target_class
from .ddn import DDN
from .fab import FAB
from .gradient import GradientAttack
from .square import Square

__all__ = ["ALIASES", "ATTACKS", "BACKENDS", "AttackInfo", "build_attack", "parse_attack_spec"]

BACKENDS = ("native", "art")


@dataclass(frozen=True)
class AttackInfo:
    """A registry entry: the attack's class, the norms it supports, its default steps, whether it
    may start randomly, and its paper."""

    name: str
    cls: type[Attack]
    description: str
    norms: tuple[float, ...]
    default_steps: int
    random_start: bool
    paper: str
    options: tuple[str, ...] = ()
    art: bool = True


ATTACKS: dict[str, AttackInfo] = {
    a.name: a
    for a in (
        AttackInfo(
            "fgsm",
            GradientAttack,
            "Fast Gradient (Sign) Method: one step of size eps (sign of the gradient for L∞, normalised for L2)",
            (math.inf, 2.0),
            1,
            False,
            "Goodfellow et al., ICLR 2015, https://arxiv.org/abs/1412.6572",
        ),
        AttackInfo(
            "bim",
            GradientAttack,
            "Basic Iterative Method: iterative FGSM from the clean input, projected on the eps ball",
            (math.inf, 2.0),
            10,
            False,
            "Kurakin et al., ICLR 2017 workshop, https://arxiv.org/abs/1607.02533",
        ),
        AttackInfo(
            "pgd",
            GradientAttack,
            "Projected Gradient Descent: BIM from a uniform random start in the eps ball",
            (math.inf, 2.0),
            10,
            True,
            "Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083",
        ),
        AttackInfo(
            "ddn",
            DDN,
            "Decoupled Direction and Norm: minimal-L2 attack, bounded by eps",
            (2.0,),
            100,
            False,
            "Rony et al., CVPR 2019, https://arxiv.org/abs/1811.09600",
        ),
        AttackInfo(
            "apgd-ce",
            APGD,
            "Auto-PGD on the cross-entropy: step size from 2·eps halved at checkpoints, momentum 0.75",
            (math.inf, 2.0),
            100,
            True,
            "Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690",
            ("restarts",),
        ),
        AttackInfo(
            "apgd-dlr",
            APGD,
            "Auto-PGD on the difference-of-logits-ratio loss (invariant to the logits' scale)",
            (math.inf, 2.0),
            100,
            True,
            "Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690",
            ("restarts",),
        ),
        AttackInfo(
            "apgd-t",
            APGD,
            "Auto-PGD on the targeted DLR loss against the 9 most likely wrong classes in turn",
            (math.inf, 2.0),
            100,
            True,
            "Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690",
            ("restarts", "n_target_classes"),
            False,
        ),
        AttackInfo(
            "fab-t",
            FAB,
            "targeted Fast Adaptive Boundary attack: projections on the linearised boundary, 9 target classes",
            (math.inf, 2.0),
            100,
            False,
            "Croce & Hein, ICML 2020, https://arxiv.org/abs/1907.02044",
            ("n_target_classes",),
            False,
        ),
        AttackInfo(
            "square",
            Square,
            "Square Attack: black-box random search with square updates (no gradients), 5000 queries",
            (math.inf, 2.0),
            5000,
            True,
            "Andriushchenko et al., ECCV 2020, https://arxiv.org/abs/1912.00049",
            ("restarts", "p_init"),
        ),
        AttackInfo(
            "autoattack",
            AutoAttack,
            "AutoAttack (standard): APGD-CE, APGD-T, FAB-T, then Square on the inputs still robust",
            (math.inf, 2.0),
            100,
            True,
            "Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690",
            ("n_queries", "n_target_classes", "p_init"),
            False,
        ),
    )
}

ALIASES = {"aa": "autoattack"}

_KW = {"gamma", "init_norm", "class_names", "restarts", "n_target_classes", "n_queries", "p_init"}


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
    ``"art"``. DDN also takes ``gamma`` (norm update, 0.05) and ``init_norm`` (1.0). The
    AutoAttack family (``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab-t``, ``square``,
    ``autoattack`` or ``aa``) takes ``restarts``, ``n_target_classes``, ``n_queries``
    (Square's ``steps``) and ``p_init`` where they apply; their ``steps`` default to the
    reference's 100 iterations (Square: 5,000 queries).
    A ready ART evasion attack object passed as ``name`` is wrapped as it is.

    Raises :class:`RobustoodError` for unknown names, bad budgets or unsupported norms.
    """
    if not isinstance(name, str):
        from ._art import ARTAttack, EvasionAttack

        if isinstance(name, EvasionAttack):
            return ARTAttack(name)  # type: ignore[return-value]
        raise RobustoodError(f"an attack is a registry name ({', '.join(ATTACKS)}) or an ART evasion attack object")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
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
    n_steps = info.default_steps if steps is None else _integer(steps, "steps", "a positive integer")
    if key == "fgsm" and n_steps != 1:
        raise RobustoodError(f"fgsm takes exactly one step, got steps={steps}; use bim or pgd for more")
    if n_steps < 1:
        raise RobustoodError(f"steps must be a positive integer, got {steps}")
    alpha = None
    if step_size is not None:
        alpha = _number(step_size, "step_size")
        if alpha <= 0:
            raise RobustoodError(f"step_size must be positive (pixel units of [0, 1] images), got {step_size}")
    if backend not in BACKENDS:
        raise RobustoodError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    tgt = _check_targeted(targeted)
    if kw.get("class_names") is not None and tgt is not None and tgt not in ("random", "least-likely"):
        tgt = resolve_target_class(tgt, kw["class_names"])
    gamma = _number(kw.get("gamma", 0.05), "gamma")
    init_norm = _number(kw.get("init_norm", 1.0), "init_norm")
    if not 0 < gamma < 1 or init_norm <= 0:
        raise RobustoodError(f"ddn needs 0 < gamma < 1 and init_norm > 0, got gamma={gamma}, init_norm={init_norm}")
    extra = _extra_options(key, info, kw)
    if key == "square" and kw.get("n_queries") is not None:
        n_steps = _integer(kw["n_queries"], "n_queries", "a positive integer")
        if n_steps < 1:
            raise RobustoodError(f"n_queries must be a positive integer, got {kw['n_queries']}")
    if backend == "art" and not info.art:
        raise RobustoodError(f"attack {key} has no ART backend; use backend native")
    if info.options and tgt is not None:
        raise RobustoodError(f"attack {key} is not given a target; apgd-t and fab-t choose their own target classes")
    return info.cls(
        name=key,
        eps=eps_v,
        norm=p,
        steps=n_steps,
        step_size=alpha,
        random_start=bool(random_start) and info.random_start,
        targeted=tgt,
        backend=backend,
        seed=check_seed(_integer(seed, "seed")),
        gamma=gamma,
        init_norm=init_norm,
        **extra,
    )


def _extra_options(key: str, info: AttackInfo, kw: dict[str, Any]) -> dict[str, Any]:
    """The options of the AutoAttack family (``restarts``, ``n_target_classes``, ``n_queries``, ``p_init``)."""
    given = {k: kw[k] for k in ("restarts", "n_target_classes", "n_queries", "p_init") if kw.get(k) is not None}
    if key == "square":
        given.pop("n_queries", None)  # Square's queries are its steps
    unknown = set(given) - set(info.options)
    if unknown:
        known = ", ".join(info.options) or "none"
        raise RobustoodError(f"attack {key} takes no option {', '.join(sorted(unknown))}; its options: {known}")
    extra: dict[str, Any] = {}
    for k, v in given.items():
        if k == "p_init":
            p = _number(v, "p_init")
            if not 0 < p <= 1:
                raise RobustoodError(f"p_init must be in (0, 1], got {v}")
            extra[k] = p
        else:
            n = _integer(v, k, "a positive integer")
            if n < 1:
                raise RobustoodError(f"{k} must be a positive integer, got {v}")
            extra[k] = n
    return extra


def parse_attack_spec(spec: str, **defaults: Any) -> Attack:
    """Build an attack from text ``NAME:EPS[:NORM][:key=value…]`` (the grammar of :mod:`robustood.spec`).

    Examples: ``fgsm:2/255``, ``pgd:8/255``, ``pgd:0.5:l2``, ``pgd:8/255:steps=20:step_size=1/255``,
    ``fgsm:8/255:targeted=least-likely``, ``ddn:1:l2:gamma=0.1``, ``autoattack:8/255``,
    ``square:0.5:l2:n_queries=1000``. Keys: ``steps``, ``step_size``, ``random_start``,
    ``targeted``, ``backend``, ``gamma``, ``init_norm``, ``seed``, and for the AutoAttack family
    ``restarts``, ``n_target_classes``, ``n_queries``, ``p_init``. ``defaults``
    are keyword arguments of :func:`build_attack` that the spec does not set (e.g. ``backend``,
    ``seed``). Raises :class:`RobustoodError` naming the spec and the option for bad input.
    """
    parsed = parse_spec(spec, what="attack")
    shown = f"attack {str(spec).strip()!r}"
    if not parsed.args or len(parsed.args) > 2:
        raise RobustoodError(f"invalid {shown}; use NAME:EPS[:NORM][:key=value…], e.g. fgsm:2/255 or pgd:0.5:l2")
    options: dict[str, Any] = dict(defaults)
    options["eps"] = parsed.args[0]
    if len(parsed.args) == 2:
        options["norm"] = parsed.args[1]
    for key, value in parsed.options:
        if key not in _READERS:
            raise RobustoodError(f"unknown option {key}= in {shown}; known: {', '.join(_READERS)}")
        options[key] = _READERS[key](value, key, shown)
    return build_attack(parsed.name, **options)


def _as_text(value: str, key: str, spec_text: str) -> str:
    return value


_READERS = {
    "steps": lambda v, k, s: as_int(v, k, s, minimum=1),
    "step_size": lambda v, k, s: as_float(v, k, s, minimum=0.0, open_min=True),
    "random_start": as_bool,
    "targeted": _as_text,
    "backend": _as_text,
    "gamma": lambda v, k, s: as_float(v, k, s, minimum=0.0, maximum=1.0, open_min=True),
    "init_norm": lambda v, k, s: as_float(v, k, s, minimum=0.0, open_min=True),
    "seed": as_int,
    "restarts": lambda v, k, s: as_int(v, k, s, minimum=1),
    "n_target_classes": lambda v, k, s: as_int(v, k, s, minimum=1),
    "n_queries": lambda v, k, s: as_int(v, k, s, minimum=1),
    "p_init": lambda v, k, s: as_float(v, k, s, minimum=0.0, maximum=1.0, open_min=True),
}


def _integer(value: Any, name: str, need: str = "an integer") -> int:
    """An integer argument: an int, an integral float or its text; ``2.7``, ``True``, ``inf`` are refused."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise RobustoodError(f"{name} must be {need}, got {value!r}") from None
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Integral)
        or (isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer())
    ):
        raise RobustoodError(f"{name} must be {need}, got {value!r}")
    return int(value)


def _number(value: Any, name: str) -> float:
    """A finite real argument: a number or its text (a decimal or a fraction such as ``1/255``)."""
    if isinstance(value, str):
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise RobustoodError(f"{name} must be a number such as 0.05 or 1/255, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise RobustoodError(f"{name} must be a finite number, got {value!r}")
    return float(value)
