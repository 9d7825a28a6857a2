"""The typed plan of an evaluation: what to compute, parsed and validated before any model is trained.

A :class:`Plan` lists the attack passes (each made once per model and shared by the
attack metrics, the squeezing detector and the ``adv:…`` OOD sets it feeds), the OOD
sets, the detectors and the squeezing detector. :func:`make_plan` turns the loose
arguments of :func:`~robustood.evaluate` into one, raising
:class:`~robustood.errors.RobustoodError` for anything it would refuse later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from ..data import DatasetBundle, load_ood
from ..errors import RobustoodError
from ..utils import format_eps

__all__ = ["AttackPass", "Plan", "make_plan", "parse_attack"]


@dataclass(frozen=True)
class AttackPass:
    """One attack at one budget, run once per model.

    ``measured``: its attack metrics are reported; ``adv_sets``: the ``adv:…`` OOD sets
    made from its adversarial examples; ``squeeze``: the squeezing detector is measured on them.
    """

    attack: Any
    measured: bool
    adv_sets: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``pgd-linf@8/255``: the attack's label and budget, as table columns show them."""
        return f"{self.attack.label}@{format_eps(float(self.attack.eps))}"


@dataclass(frozen=True)
class Plan:
    """Everything one evaluation computes per model."""

    passes: tuple[AttackPass, ...]
    ood: Mapping[str, Dataset]
    detectors: tuple[Any, ...]
    squeeze: Any | None
    detector_attacks: tuple[Any, ...] = ()
    """:class:`~robustood.detectors.attack.DetectorAttack` s, each run on every detector's score,
    on the ID test inputs (score raised) and on every plain OOD set (score lowered)."""

    @property
    def adv_sets(self) -> tuple[str, ...]:
        return tuple(s for p in self.passes for s in p.adv_sets)

    @property
    def measured(self) -> tuple[AttackPass, ...]:
        return tuple(p for p in self.passes if p.measured)


def parse_attack(spec: Any, seed: int) -> Any:
    """An attack from a spec string (``pgd:8/255``, seeded with ``seed``) or an attack object as it is."""
    from ..attacks import Attack, parse_attack_spec

    if isinstance(spec, str):
        return parse_attack_spec(spec, seed=seed)
    if isinstance(spec, Attack) or (callable(getattr(spec, "generate", None)) and hasattr(spec, "label")):
        return spec
    raise RobustoodError(
        f"an attack is a spec such as 'fgsm:2/255' or a robustood attack object, got {type(spec).__name__}"
    )


def _named(attack: Any, bundle: DatasetBundle) -> Any:
    """``attack`` with a target class given by name resolved against the dataset's classes."""
    return attack.with_class_names(bundle.info.class_names) if hasattr(attack, "with_class_names") else attack


def _squeezer(defenses: Sequence[Any]) -> Any | None:
    from ..defenses import FeatureSqueezingDetector

    found = []
    for d in defenses:
        if isinstance(d, FeatureSqueezingDetector):
            found.append(d)
        elif isinstance(d, str) and d.strip().lower() in ("squeeze", "feature-squeezing", "squeezing"):
            found.append(FeatureSqueezingDetector())
        elif isinstance(d, str) and d.strip().lower().startswith("distill"):
            raise RobustoodError("distillation trains another model: give it as a model (e.g. distill:20)")
        else:
            raise RobustoodError(f"unknown defense {d!r}; use squeeze, or give distill:T as a model")
    if len(found) > 1:
        raise RobustoodError("give one feature-squeezing detector per evaluation")
    return found[0] if found else None


def _ood_sets(
    ood: Sequence[str] | Mapping[str, Dataset], bundle: DatasetBundle, *, n, seed, root, download
) -> tuple[dict[str, Dataset], list[str]]:
    """Plain OOD datasets by name, and the names of the ``adv:…`` sets (made in attack passes)."""
    items = list(ood.items()) if isinstance(ood, Mapping) else [(str(o).strip(), None) for o in ood]
    plain: dict[str, Dataset] = {}
    adv: list[str] = []
    for name, ds in items:
        if not name:
            raise RobustoodError("empty OOD set name; use e.g. noise, natural, heldout:3, adv:fgsm:2/255")
        if name == "id":
            raise RobustoodError("'id' names the in-distribution test scores; give the OOD set another name")
        if name in plain or name in adv:
            continue
        if ds is None and name.lower().startswith("adv:"):
            adv.append(name)
            continue
        ds = ds if ds is not None else load_ood(name, bundle, n=n, seed=seed, root=root, download=download)
        if not hasattr(ds, "__len__"):
            raise RobustoodError(f"OOD set {name!r} must be a dataset of images, got {type(ds).__name__}")
        if len(ds) == 0:  # type: ignore[arg-type]
            raise RobustoodError(f"OOD set {name!r} has zero samples; give it at least one image")
        plain[name] = ds
    return plain, adv


def make_plan(
    bundle: DatasetBundle,
    *,
    attacks: Sequence[Any],
    detectors: Sequence[Any],
    ood: Sequence[str] | Mapping[str, Dataset],
    defenses: Sequence[Any],
    seed: int,
    ood_size: int | None,
    root: Any,
    download: bool,
    detector_attacks: Sequence[Any] = (),
) -> Plan:
    """Parse and validate the arguments of :func:`~robustood.evaluate`; load the plain OOD sets."""
    from ..detectors import make_detector

    parsed = [_named(parse_attack(a, seed), bundle) for a in attacks]
    for i, a in enumerate(parsed):
        if a in parsed[:i]:
            raise RobustoodError(f"attack {a.label} at eps {format_eps(float(a.eps))} is given twice")
    if len(ood) and not detectors:
        raise RobustoodError("OOD sets need a detector; add e.g. detectors=['maxlogit'] (--detector maxlogit)")
    if detectors and not len(ood):
        raise RobustoodError("detectors need an OOD set; add e.g. ood=['noise'] (--ood noise)")
    dets = tuple(make_detector(d) for d in detectors)  # validates names now; wraps pytorch-ood objects
    plain, adv_names = _ood_sets(ood, bundle, n=ood_size, seed=seed, root=root, download=download)
    passes = [AttackPass(a, measured=True) for a in parsed]
    for name in adv_names:
        attack = _named(parse_attack(name.split(":", 1)[1], seed), bundle)
        for i, p in enumerate(passes):
            if p.attack == attack:
                passes[i] = AttackPass(p.attack, p.measured, (*p.adv_sets, name))
                break
        else:
            passes.append(AttackPass(attack, measured=False, adv_sets=(name,)))
    squeeze = _squeezer(defenses)
    if squeeze is not None and not parsed:
        raise RobustoodError("the squeeze defense is measured under attacks; add e.g. attacks=['fgsm:2/255']")
    det_attacks = _detector_attacks(detector_attacks, dets, plain, seed)
    return Plan(tuple(passes), plain, dets, squeeze, det_attacks)


def _detector_attacks(specs: Sequence[Any], dets: tuple[Any, ...], plain: Mapping[str, Any], seed: int):
    """Parsed detector attacks, refused where no detector or no plain OOD set could be attacked."""
    if not specs:
        return ()
    from ..detectors.attack import parse_detector_attacks
    from ..detectors.differentiable import DIFFERENTIABLE, is_differentiable

    parsed = tuple(parse_detector_attacks(list(specs), seed=seed))
    if not dets:
        raise RobustoodError(
            "detector attacks need detectors and OOD sets; add e.g. detectors=['maxlogit'], ood=['noise']"
        )
    if not plain:
        raise RobustoodError("detector attacks need a plain OOD set (noise, natural, heldout:K …), not only adv:… sets")
    bad = [getattr(d, "name", repr(d)) for d in dets if not is_differentiable(d)]
    if bad:
        raise RobustoodError(
            f"detector {bad[0]!r} has no differentiable score to attack; attackable: {', '.join(DIFFERENTIABLE)}"
        )
    return parsed
