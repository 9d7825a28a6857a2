"""Training recipes of the defenses, registered with :func:`robustood.train.register_recipe`.

A recipe string names how a zoo model is trained and is part of its cache key:

- ``adv:ATTACK:EPS[:w=W][:share=S][:steps=K][:step=STEP]`` — adversarial training,
  e.g. ``adv:fgsm:2/255``, ``adv:pgd:8/255:w=1:steps=7``, ``adv:fgsm:4/255:share=0.1``;
- ``noise:EPS[:w=W]`` — random-sign noise augmentation, the baseline, e.g. ``noise:8/255``;
- ``oe:SOURCE[:alpha=A][:eps=EPS]`` — outlier exposure with ``noise``, ``natural`` or ``adv``
  outliers, e.g. ``oe:noise``.

Defaults: ``w=0.5``, ``share=1``, ``alpha=0.5``, ``eps=8/255`` for ``oe:adv``.
"""

from __future__ import annotations

from ..data import DatasetBundle, load_ood
from ..errors import RobustoodError
from ..train import Objective, register_recipe
from ..utils import format_eps, parse_eps
from .training import OE_SOURCES, AdversarialTraining, NoiseAugmentation, OutlierExposure

__all__ = ["adversarial_recipe", "noise_recipe", "oe_recipe"]

NATURAL_POOL = 512


def _options(recipe: str, args: list[str], allowed: dict[str, str]) -> dict[str, str]:
    """``key=value`` arguments of a recipe, checked against ``allowed`` (key → meaning)."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip().lower()
        if not sep or key not in allowed or not value.strip():
            known = ", ".join(f"{k}= ({v})" for k, v in allowed.items())
            raise RobustoodError(f"invalid option {arg!r} in recipe {recipe!r}; options: {known}")
        out[key] = value.strip()
    return out


def _float(recipe: str, key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise RobustoodError(f"option {key}= of recipe {recipe!r} must be a number, got {value!r}") from None


@register_recipe("adv", "adversarial training: adv:ATTACK:EPS[:w=0.5][:share=1][:steps=K], e.g. adv:fgsm:2/255")
def _adv(args: list[str], bundle: DatasetBundle) -> Objective:
    recipe = ":".join(["adv", *args])
    if len(args) < 2:
        raise RobustoodError(f"recipe {recipe!r} needs an attack and an eps, e.g. adv:fgsm:2/255")
    opts = _options(recipe, args[2:], {"w": "adversarial weight", "share": "attacked share", "steps": "", "step": ""})
    steps = opts.get("steps")
    if steps is not None and not steps.isdigit():
        raise RobustoodError(f"option steps= of recipe {recipe!r} must be a positive integer, got {steps!r}")
    return AdversarialTraining(
        attack=args[0].strip().lower(),
        eps=parse_eps(args[1]),
        weight=_float(recipe, "w", opts.get("w", "0.5")),
        share=_float(recipe, "share", opts.get("share", "1")),
        steps=int(steps) if steps is not None else None,
        step_size=parse_eps(opts["step"]) if "step" in opts else None,
    )


@register_recipe("noise", "random-sign noise augmentation (baseline): noise:EPS[:w=0.5], e.g. noise:8/255")
def _noise(args: list[str], bundle: DatasetBundle) -> Objective:
    recipe = ":".join(["noise", *args])
    if not args:
        raise RobustoodError(f"recipe {recipe!r} needs an eps, e.g. noise:8/255")
    opts = _options(recipe, args[1:], {"w": "noise weight"})
    return NoiseAugmentation(eps=parse_eps(args[0]), weight=_float(recipe, "w", opts.get("w", "0.5")))


@register_recipe("oe", "outlier exposure: oe:noise|natural|adv[:alpha=0.5][:eps=8/255], e.g. oe:noise")
def _oe(args: list[str], bundle: DatasetBundle) -> Objective:
    recipe = ":".join(["oe", *args])
    if not args or args[0].strip().lower() not in OE_SOURCES:
        raise RobustoodError(f"recipe {recipe!r} needs an outlier source: oe:{'|'.join(OE_SOURCES)}")
    source = args[0].strip().lower()
    opts = _options(recipe, args[1:], {"alpha": "uniform-target weight", "eps": "budget of oe:adv"})
    pool = None
    if source == "natural":
        n = min(NATURAL_POOL, len(bundle.train))  # type: ignore[arg-type]
        pool = load_ood("natural", bundle, n=n, seed=0).tensors[0]  # type: ignore[attr-defined]
    return OutlierExposure(
        source=source,
        alpha=_float(recipe, "alpha", opts.get("alpha", "0.5")),
        eps=parse_eps(opts.get("eps", "8/255")),
        pool=pool,
    )


def _num(value: float) -> str:
    return f"{value:g}"


def adversarial_recipe(
    attack: str, eps: float, *, weight: float = 0.5, share: float = 1.0, steps: int | None = None
) -> str:
    """The canonical recipe string, e.g. ``adversarial_recipe("fgsm", 2/255) == "adv:fgsm:2/255"``."""
    parts = ["adv", attack.lower(), format_eps(parse_eps(eps))]
    if weight != 0.5:
        parts.append(f"w={_num(weight)}")
    if share != 1.0:
        parts.append(f"share={_num(share)}")
    if steps is not None:
        parts.append(f"steps={int(steps)}")
    return ":".join(parts)


def noise_recipe(eps: float, *, weight: float = 0.5) -> str:
    """``noise:EPS`` (with ``:w=W`` when not 0.5)."""
    text = f"noise:{format_eps(parse_eps(eps))}"
    return text if weight == 0.5 else f"{text}:w={_num(weight)}"


def oe_recipe(source: str, *, alpha: float = 0.5, eps: float | None = None) -> str:
    """``oe:SOURCE`` (with ``:alpha=A`` and ``:eps=EPS`` when not the defaults)."""
    text = f"oe:{source.lower()}"
    if alpha != 0.5:
        text += f":alpha={_num(alpha)}"
    if eps is not None and source.lower() == "adv" and eps != 8 / 255:
        text += f":eps={format_eps(parse_eps(eps))}"
    return text
