"""Training recipes: a short string names how a zoo model is trained, and is part of its cache key.

- ``plain`` — cross-entropy on clean inputs;
- ``adv:ATTACK:EPS[:w=W][:share=S][:steps=K][:step=STEP]`` — adversarial training, e.g.
  ``adv:fgsm:2/255``, ``adv:pgd:8/255:w=1:steps=7``, ``adv:fgsm:4/255:share=0.1``;
- ``noise:EPS[:w=W]`` — random-sign noise augmentation, the baseline, e.g. ``noise:8/255``;
- ``oe:SOURCE[:alpha=A][:eps=EPS]`` — outlier exposure with ``noise``, ``natural`` or ``adv``
  outliers, e.g. ``oe:noise``.

Every recipe also takes ``epochs=N`` (train for at most N epochs). Defaults: ``w=0.5``,
``share=1``, ``alpha=0.5``, ``eps=8/255`` for ``oe:adv``. Recipes are written in the one
``NAME:ARG:key=value`` grammar of :mod:`robustood.spec`. This module sits above the training
loop (:mod:`robustood.train`) and the training objectives
(:mod:`robustood.defenses.training`): :data:`RECIPES` is a plain table, nothing registers
itself on import. Defensive distillation (``distill:T``) trains two models and is resolved
with the other model specs in :mod:`robustood.resolve`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .data import DatasetBundle, load_ood
from .errors import RobustoodError
from .spec import Spec, as_float, as_int, parse_spec
from .train import Objective, cross_entropy
from .utils import format_eps, parse_eps

__all__ = [
    "RECIPES",
    "Recipe",
    "adversarial_recipe",
    "noise_recipe",
    "objective_for",
    "oe_recipe",
    "parse_recipe",
    "split_recipe",
]

NATURAL_POOL = 512


@dataclass(frozen=True)
class Recipe:
    """A registry entry: the recipe's name, its syntax and meaning, and ``build(spec, bundle) -> Objective``."""

    name: str
    description: str
    build: Callable[[Spec, DatasetBundle], Objective]


def parse_recipe(text: str) -> tuple[Spec, int | None]:
    """Split a recipe string into its spec without ``epochs=`` and the epochs it names (``None``: not given).

    >>> parse_recipe("adv:fgsm:2/255:epochs=15")
    (Spec(name='adv', args=('fgsm', '2/255'), options=()), 15)
    """
    spec = parse_spec(text, what="recipe")
    epochs_text = spec.option("epochs")
    epochs = as_int(epochs_text, "epochs", f"recipe {str(text).strip()!r}", minimum=1) if epochs_text else None
    kept = tuple((k, v) for k, v in spec.options if k != "epochs")
    return Spec(spec.name, spec.args, kept), epochs


def split_recipe(text: str) -> tuple[str, int | None]:
    """``adv:fgsm:2/255:epochs=15`` → ``("adv:fgsm:2/255", 15)``: the recipe proper and its training length.

    The full string names the cached model, so runs of different lengths never share a cache entry.
    """
    spec, epochs = parse_recipe(text)
    return str(spec), epochs


def _options(spec: Spec, allowed: dict[str, str]) -> dict[str, str]:
    unknown = [k for k, _ in spec.options if k not in allowed]
    if unknown:
        known = ", ".join(f"{k}= ({v})" for k, v in allowed.items())
        raise RobustoodError(f"invalid option {unknown[0]}= in recipe {str(spec)!r}; options: {known}, epochs=")
    return spec.opts


def _plain(spec: Spec, bundle: DatasetBundle) -> Objective:
    if spec.args or spec.options:
        raise RobustoodError(f"recipe 'plain' takes no arguments, got {str(spec)!r}")
    return cross_entropy


def _adv(spec: Spec, bundle: DatasetBundle) -> Objective:
    from .defenses.training import AdversarialTraining

    shown = f"recipe {str(spec)!r}"
    if len(spec.args) != 2:
        raise RobustoodError(f"{shown} needs an attack and an eps, e.g. adv:fgsm:2/255")
    if "step_size" in spec.opts and "step" not in spec.opts:  # the attack option's name, accepted here too
        spec = Spec(spec.name, spec.args, tuple(("step" if k == "step_size" else k, v) for k, v in spec.options))
    opts = _options(
        spec, {"w": "adversarial weight", "share": "attacked share", "steps": "attack steps", "step": "step size"}
    )
    return AdversarialTraining(
        attack=spec.args[0].lower(),
        eps=parse_eps(spec.args[1], what=f"the eps of {shown}"),
        weight=as_float(opts.get("w", "0.5"), "w", shown),
        share=as_float(opts.get("share", "1"), "share", shown),
        steps=as_int(opts["steps"], "steps", shown, minimum=1) if "steps" in opts else None,
        step_size=as_float(opts["step"], "step", shown, minimum=0, maximum=1, open_min=True)
        if "step" in opts
        else None,
    )


def _noise(spec: Spec, bundle: DatasetBundle) -> Objective:
    from .defenses.training import NoiseAugmentation

    shown = f"recipe {str(spec)!r}"
    if len(spec.args) != 1:
        raise RobustoodError(f"{shown} needs an eps, e.g. noise:8/255")
    opts = _options(spec, {"w": "noise weight"})
    return NoiseAugmentation(
        eps=parse_eps(spec.args[0], what=f"the eps of {shown}"),
        weight=as_float(opts.get("w", "0.5"), "w", shown),
    )


def _oe(spec: Spec, bundle: DatasetBundle) -> Objective:
    from .defenses.training import OE_SOURCES, OutlierExposure

    shown = f"recipe {str(spec)!r}"
    if len(spec.args) != 1 or spec.args[0].lower() not in OE_SOURCES:
        raise RobustoodError(f"{shown} needs an outlier source: oe:{'|'.join(OE_SOURCES)}")
    source = spec.args[0].lower()
    opts = _options(spec, {"alpha": "uniform-target weight", "eps": "budget of oe:adv"})
    pool = None
    if source == "natural":
        n = min(NATURAL_POOL, len(bundle.train))  # type: ignore[arg-type]
        pool = load_ood("natural", bundle, n=n, seed=0).tensors[0]  # type: ignore[attr-defined]
    return OutlierExposure(
        source=source,
        alpha=as_float(opts.get("alpha", "0.5"), "alpha", shown),
        eps=parse_eps(opts.get("eps", "8/255"), what=f"option eps= of {shown}"),
        pool=pool,
    )


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("plain", "cross-entropy on clean inputs", _plain),
        Recipe("adv", "adversarial training: adv:ATTACK:EPS[:w=0.5][:share=1][:steps=K], e.g. adv:fgsm:2/255", _adv),
        Recipe("noise", "random-sign noise augmentation (baseline): noise:EPS[:w=0.5], e.g. noise:8/255", _noise),
        Recipe("oe", "outlier exposure: oe:noise|natural|adv[:alpha=0.5][:eps=8/255], e.g. oe:noise", _oe),
    )
}
"""Training recipes by name; adding one is a factory function and one line here."""


def objective_for(recipe: str, bundle: DatasetBundle) -> Objective:
    """The training objective a recipe string names (``plain``, ``adv:fgsm:2/255:epochs=15`` …).

    Raises :class:`RobustoodError` for an unknown recipe or a bad argument, before any training.
    """
    spec, _ = parse_recipe(recipe)
    if spec.name not in RECIPES:
        raise RobustoodError(f"unknown training recipe {str(recipe).strip()!r}; known: {', '.join(RECIPES)}")
    return RECIPES[spec.name].build(spec, bundle)


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
