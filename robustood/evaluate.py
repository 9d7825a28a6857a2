"""The one evaluation API: models × input sets × (attack, eps) × metrics, each pass computed once.

:func:`evaluate` is what ``robustood compare`` calls, and the entry point for library users.
Per model it runs

1. **one clean pass** over the ID test split: accuracy, the logits kept for every attack,
   and the ID scores of every detector (logit and feature detectors share that pass);
2. **one pass per OOD set**: every detector scores it;
3. **one attack pass per attack × eps**: the adversarial batches are made once and shared
   by the attack metrics, the feature-squeezing detector and the ``adv:…`` OOD sets.

Each finished unit (a model's clean pass, one OOD set, one attack) goes to a
:class:`~robustood.store.ResultStore` when ``store=`` names a file, so a crash half-way
keeps the finished rows and a rerun resumes from them. Everything is seeded: the same call
with the same seed on CPU gives identical numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import DatasetBundle, load_dataset
from .errors import RobustoodError
from .models import ZOO
from .report import Report, Row
from .store import ResultStore, provenance
from .train import RECIPES, TrainConfig, get_model, pretrained, split_recipe
from .utils import format_eps, seed_everything, select_device

__all__ = ["CLEAN", "HEADLINE_METRICS", "check_model_spec", "evaluate", "resolve_model"]

CLEAN = "test"
"""The input set name of the clean ID test split in report rows."""

HEADLINE_METRICS = (
    "accuracy",
    "robust_accuracy",
    "auroc",
    "fpr_at_95_tpr",
    "detection_rate",
)
"""The metrics of the comparison matrix ``robustood compare`` prints (every metric stays in the rows)."""

ATTACK_METRICS = (
    "robust_accuracy",
    "success_rate",
    "confidence_drop",
    "mean_iterations",
    "linf_mean",
    "linf_max",
    "l2_mean",
    "l2_max",
    "images_per_second",
)
OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "detection_accuracy")

ModelLike = str | os.PathLike | nn.Module


# --------------------------------------------------------------------------- models


def resolve_model(
    spec: ModelLike,
    bundle: DatasetBundle,
    *,
    arch: str | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    progress: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """What a user calls "a model", ready on ``device``.

    - a training recipe, trained once and cached: ``plain``, ``adv:fgsm:2/255``,
      ``adv:pgd:8/255:epochs=15``, ``noise:8/255``, ``oe:noise``, ``distill:20``
      (defensive distillation at T = 20; the student is returned);
    - a zoo architecture name (``resnet20``): that architecture trained plainly;
    - a checkpoint or TorchScript file, or an ``nn.Module`` (checked against the dataset).
    """
    from . import defenses as _defenses  # noqa: F401  (registers the adv:, noise:, oe: recipes)

    if isinstance(spec, nn.Module):
        return get_model(spec, bundle, device=device)
    text = str(spec).strip()
    if not text:
        raise RobustoodError("empty model name; use a recipe (plain, adv:fgsm:2/255 …), a zoo name or a file")
    kw = dict(seed=seed, device=device, cache=cache, config=config, progress=progress)
    name = text.split(":", 1)[0].lower()
    if text.lower() in ZOO:
        return pretrained(bundle, text.lower(), recipe="plain", **kw)  # type: ignore[arg-type]
    if name == "distill":
        return _distilled(text, bundle, arch=arch, **kw)  # type: ignore[arg-type]
    if name in RECIPES:
        return pretrained(bundle, arch, recipe=text, **kw)  # type: ignore[arg-type]
    path = Path(text).expanduser()
    if path.exists():
        return get_model(path, bundle, device=device)
    if path.suffix.lower() in (".pt", ".pth", ".safetensors", ".ts"):
        raise RobustoodError(f"model file {text} does not exist")
    raise RobustoodError(
        f"unknown model {text!r}: use a training recipe ({', '.join([*RECIPES, 'distill'])}; e.g. plain, "
        f"adv:fgsm:2/255, distill:20), a zoo name ({', '.join(ZOO)}) or a checkpoint / TorchScript file"
    )


def _temperature(text: str) -> float:
    base, _ = split_recipe(text)
    args = base.split(":")[1:]
    try:
        if len(args) > 1:
            raise ValueError
        temperature = float(args[0]) if args else 20.0
        if not temperature > 0:
            raise ValueError
    except ValueError:
        raise RobustoodError(f"use distill:T with a number T > 0 (e.g. distill:20), got {text!r}") from None
    return temperature


def check_model_spec(spec: ModelLike, bundle: DatasetBundle) -> None:
    """Refuse a model spec that :func:`resolve_model` would refuse, without training or loading anything."""
    from . import defenses as _defenses  # noqa: F401  (registers the adv:, noise:, oe: recipes)
    from .train import objective_for

    if isinstance(spec, nn.Module):
        return
    text = str(spec).strip()
    name = text.split(":", 1)[0].lower()
    if not text or text.lower() in ZOO:
        return
    if name == "distill":
        _temperature(text)
    elif name in RECIPES:
        objective_for(split_recipe(text)[0], bundle)
    elif not Path(text).expanduser().exists():
        resolve_model(text, bundle)  # raises the message that explains what a model spec is


def _distilled(text: str, bundle: DatasetBundle, *, arch, seed, device, cache, config, progress):
    from .defenses import distilled_pretrained

    temperature = _temperature(text)
    _, epochs = split_recipe(text)
    cfg = config or TrainConfig(seed=seed)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    result = distilled_pretrained(
        bundle, arch, temperature=temperature, seed=seed, device=device, cache=cache, config=cfg, progress=progress
    )
    return result.student, {"recipe": text, "temperature": result.temperature, "epochs": result.student_epochs}


def _labelled(models: ModelLike | Sequence[ModelLike] | Mapping[str, ModelLike]) -> dict[str, ModelLike]:
    if isinstance(models, Mapping):
        out = {str(k): v for k, v in models.items()}
    else:
        if isinstance(models, (str, os.PathLike, nn.Module)):
            models = [models]
        out = {}
        for i, m in enumerate(models):
            label = f"model{i}" if isinstance(m, nn.Module) else str(m).strip()
            if label in out:
                raise RobustoodError(f"model {label!r} is given twice")
            out[label] = m
    if not out:
        raise RobustoodError("no model given; use e.g. plain or adv:fgsm:2/255")
    return out


# --------------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    """What to compute: parsed once, validated before any model is trained."""

    attacks: dict[str, Any]  # key (label@eps) -> Attack, for the attack metrics
    adv_sets: dict[str, Any]  # OOD set name (adv:…) -> Attack
    ood: dict[str, Any]  # OOD set name -> Dataset
    detectors: list[str | Any]
    squeeze: list[Any]
    passes: dict[str, Any] = field(default_factory=dict)  # key -> Attack: the union

    def __post_init__(self) -> None:
        self.passes = dict(self.attacks)
        for attack in self.adv_sets.values():
            self.passes.setdefault(_attack_key(attack), attack)


def _attack_key(attack: Any) -> str:
    return f"{attack.label}@{format_eps(float(attack.eps))}"


def _parse_attack(spec: Any, seed: int) -> Any:
    from .attacks import Attack, parse_attack_spec

    if isinstance(spec, Attack):
        return spec
    if isinstance(spec, str):
        return parse_attack_spec(spec, seed=seed)
    raise RobustoodError(f"an attack is a spec such as 'fgsm:2/255' or a robustood Attack, got {type(spec).__name__}")


def _parse_defenses(defenses: Sequence[Any], device: torch.device) -> list[Any]:
    from .defenses import FeatureSqueezingDetector

    out = []
    for d in defenses:
        if isinstance(d, FeatureSqueezingDetector):
            out.append(d)
        elif isinstance(d, str) and d.strip().lower() in ("squeeze", "feature-squeezing", "squeezing"):
            out.append(FeatureSqueezingDetector(device=device))
        elif isinstance(d, str) and d.strip().lower().startswith("distill"):
            raise RobustoodError("distillation trains another model: give it as a model (e.g. distill:20)")
        else:
            raise RobustoodError(f"unknown defense {d!r}; use squeeze, or give distill:T as a model")
    if len(out) > 1:
        raise RobustoodError("give one feature-squeezing detector per evaluation")
    return out


def _plan(bundle, attacks, detectors, ood, defenses, seed, limit, device, root, download) -> _Plan:
    from .detectors import make_detector, resolve_ood_sets

    parsed = [_parse_attack(a, seed) for a in attacks]
    by_key = {_attack_key(a): a for a in parsed}
    if len(by_key) < len(parsed):
        raise RobustoodError("an attack at one eps is given twice")
    ood = [o.strip() for o in ood]
    if ood and not detectors:
        raise RobustoodError("OOD sets need a detector; add e.g. detectors=['maxlogit'] (--detector maxlogit)")
    if detectors and not ood:
        raise RobustoodError("detectors need an OOD set; add e.g. ood=['noise'] (--ood noise)")
    for d in detectors:
        if isinstance(d, str):
            make_detector(d)  # validates the name before any training
    adv = {o: _parse_attack(o.split(":", 1)[1], seed) for o in ood if o.lower().startswith("adv:")}
    plain = resolve_ood_sets([o for o in ood if o not in adv], bundle, n=limit, seed=seed, root=root, download=download)
    for name, ds in plain.items():
        if len(ds) == 0:  # type: ignore[arg-type]
            raise RobustoodError(f"OOD set {name!r} has zero samples; give it at least one image")
    squeeze = _parse_defenses(defenses, device)
    if squeeze and not parsed:
        raise RobustoodError("the squeeze defense is measured under attacks; add e.g. attacks=['fgsm:2/255']")
    return _Plan(by_key, adv, plain, list(detectors), squeeze)


def _fingerprint(*parts: Any) -> str:
    text = json.dumps([str(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- evaluation of one model


class _ModelRun:
    """Every unit of one model; passes are computed when a unit is not in the store."""

    def __init__(self, label: str, model: nn.Module, bundle: DatasetBundle, plan: _Plan, ctx: dict[str, Any]):
        self.label, self.model, self.bundle, self.plan = label, model, bundle, plan
        self.device: torch.device = ctx["device"]
        self.batch_size: int = ctx["batch_size"]
        self.progress: bool | None = ctx["progress"]
        self.store: ResultStore = ctx["store"]
        self.prefix: str = ctx["prefix"]
        self._clean: dict[str, Any] | None = None
        self._detectors: list[Any] | None = None
        self._squeeze: Any = None

    # -- state shared by the units, built on first use
    def detectors(self) -> list[Any]:
        if self._detectors is None:
            from .detectors import make_detector
            from .detectors.run import fit_detectors

            dets = [make_detector(d) if isinstance(d, str) else d for d in self.plan.detectors]
            fit_detectors(
                dets,
                self.model,
                self.bundle.train,
                device=self.device,
                batch_size=self.batch_size,
                progress=self.progress,
            )
            self._detectors = dets
        return self._detectors

    def detector_labels(self) -> list[str]:
        from .detectors.run import detector_labels

        return detector_labels(self.detectors())

    def squeezer(self) -> Any:
        if self._squeeze is None and self.plan.squeeze:
            from .defenses import FeatureSqueezingDetector

            proto = self.plan.squeeze[0]
            self._squeeze = FeatureSqueezingDetector(
                bit_depth=proto.bit_depth,
                median_window=proto.median_window,
                resample=proto.resample,
                threshold=proto.threshold,
                fpr=proto.fpr,
                batch_size=self.batch_size,
                device=self.device,
            ).fit(self.model, self.bundle.val)
        return self._squeeze

    def clean(self) -> dict[str, Any]:
        """The clean pass: logits (CPU, for the attacks), accuracy, ID scores and thresholds."""
        if self._clean is None:
            from .detectors.metrics import calibrate_threshold
            from .detectors.run import stream_scores

            dets = self.detectors() if self.plan.detectors else []
            kw = dict(
                shape=self.bundle.info.input_shape,
                device=self.device,
                batch_size=self.batch_size,
                progress=self.progress,
            )
            scores, correct, logits = stream_scores(
                self.model, self.bundle.test, dets, desc=f"{self.label}: clean", keep_logits=True, **kw
            )
            thresholds: dict[str, float] = {}
            if dets and len(self.bundle.val) > 0:  # type: ignore[arg-type]
                val, _, _ = stream_scores(self.model, self.bundle.val, dets, desc=f"{self.label}: val", **kw)
                thresholds = {lab: calibrate_threshold(s) for lab, s in zip(self.detector_labels(), val, strict=True)}
            n = len(logits) if logits is not None else 0
            self._clean = {
                "logits": logits,
                "accuracy": correct / n if n else math.nan,
                "scores": dict(zip(self.detector_labels(), scores, strict=True)) if dets else {},
                "thresholds": thresholds,
                "n": n,
            }
        return self._clean

    def _unit(self, name: str) -> str:
        return f"{self.prefix}|{self.label}|{name}"

    def _done(self, unit: str) -> list[Row] | None:
        return self.store.get(self._unit(unit))

    def _row(self, input_set: str, metric: str, value: float, attack: str = "", eps=None, detector: str = "") -> Row:
        return Row(self.label, input_set, attack, eps, metric, float(value), detector)

    # -- the units
    def clean_unit(self) -> list[Row]:
        unit = "clean"
        if (rows := self._done(unit)) is not None:
            return rows
        c = self.clean()
        rows = [self._row(CLEAN, "accuracy", c["accuracy"])]
        if self.plan.squeeze:
            rows += self._squeeze_clean_rows()
        return self.store.put(self._unit(unit), rows)

    def _squeeze_clean_rows(self) -> list[Row]:
        from .inference import iter_batches

        det = self.squeezer()
        n = flagged = correct = 0
        for x, y in iter_batches(self.bundle.test, self.batch_size):
            x, y = x.to(self.device), y.to(self.device)
            flagged += int(det.flag(x).sum())
            correct += int((det.classify(x) == y).sum())
            n += len(y)
        return [
            self._row(CLEAN, "false_positive_rate", flagged / n, detector="squeeze"),
            self._row(CLEAN, "squeezed_accuracy", correct / n, detector="squeeze"),
            self._row(CLEAN, "threshold", det.threshold_, detector="squeeze"),
        ]

    def ood_units(self) -> list[Row]:
        from .detectors.run import stream_scores

        rows: list[Row] = []
        for set_name, ds in self.plan.ood.items():
            unit = f"ood:{set_name}:{_fingerprint(*self.plan.detectors)}"
            if (done := self._done(unit)) is not None:
                rows += done
                continue
            c = self.clean()
            scores, _, _ = stream_scores(
                self.model,
                ds,
                self.detectors(),
                shape=self.bundle.info.input_shape,
                device=self.device,
                batch_size=self.batch_size,
                progress=self.progress,
                desc=f"{self.label}: {set_name}",
            )
            new = self._ood_rows(set_name, scores, c)
            rows += self.store.put(self._unit(unit), new)
        return rows

    def _ood_rows(self, set_name: str, ood_scores: Sequence[torch.Tensor], clean: dict[str, Any]) -> list[Row]:
        from .detectors import ood_metrics

        rows = []
        for lab, s_ood in zip(self.detector_labels(), ood_scores, strict=True):
            m = ood_metrics(clean["scores"][lab], s_ood, threshold=clean["thresholds"].get(lab))
            rows += [self._row(set_name, k, m[k], detector=lab) for k in OOD_METRICS if k in m]
        return rows

    def attack_units(self) -> list[Row]:
        from .attacks import run_attack

        rows: list[Row] = []
        for key, attack in self.plan.passes.items():
            adv_sets = [name for name, a in self.plan.adv_sets.items() if _attack_key(a) == key]
            measured = key in self.plan.attacks
            unit = f"attack:{attack!r}:{_fingerprint(measured, adv_sets, *self.plan.detectors, *self.plan.squeeze)}"
            if (done := self._done(unit)) is not None:
                rows += done
                continue
            c = self.clean()
            dets = self.detectors() if adv_sets else []
            squeeze = self.squeezer() if (self.plan.squeeze and measured) else None
            adv_scores: list[list[torch.Tensor]] = [[] for _ in dets]
            tally = {"flagged": 0, "successful": 0, "flagged_successful": 0, "squeezed_correct": 0}

            def on_batch(x, y, x_adv, logits_adv, dets=dets, adv_scores=adv_scores, squeeze=squeeze, tally=tally):
                from .detectors.run import score_batch

                if dets:
                    scores, _ = score_batch(self.model, x_adv, dets, logits=logits_adv)
                    for i, s in enumerate(scores):
                        adv_scores[i].append(s.float().cpu())
                if squeeze is not None:
                    with torch.no_grad():
                        ok_clean = self.model(x).argmax(1) == y
                    flags = squeeze.flag(x_adv)
                    success = ok_clean & (logits_adv.argmax(1) != y)
                    tally["flagged"] += int(flags.sum())
                    tally["successful"] += int(success.sum())
                    tally["flagged_successful"] += int((flags & success).sum())
                    tally["squeezed_correct"] += int((squeeze.classify(x_adv) == y).sum())

            if hasattr(attack, "reset"):
                attack.reset()
            result = run_attack(
                self.model,
                self.bundle,
                attack,
                device=self.device,
                batch_size=self.batch_size,
                progress=self.progress,
                clean_logits=c["logits"],
                on_batch=on_batch,
            )
            eps = float(attack.eps)
            new: list[Row] = []
            if measured:
                new += [self._row(CLEAN, m, getattr(result, m), result.attack, eps) for m in ATTACK_METRICS]
            if squeeze is not None:
                n = result.n
                s = tally["successful"]
                new += [
                    self._row(CLEAN, "detection_rate", tally["flagged"] / n, result.attack, eps, "squeeze"),
                    self._row(
                        CLEAN,
                        "detection_rate_successful",
                        tally["flagged_successful"] / s if s else math.nan,
                        result.attack,
                        eps,
                        "squeeze",
                    ),
                    self._row(
                        CLEAN, "squeezed_robust_accuracy", tally["squeezed_correct"] / n, result.attack, eps, "squeeze"
                    ),
                ]
            if dets:
                scores = [torch.cat(s) for s in adv_scores]
                for set_name in adv_sets:
                    new += self._ood_rows(set_name, scores, c)
            rows += self.store.put(self._unit(unit), new)
        return rows


# --------------------------------------------------------------------------- the entry point


def evaluate(
    models: ModelLike | Sequence[ModelLike] | Mapping[str, ModelLike],
    dataset: str | DatasetBundle = "digits",
    *,
    attacks: Sequence[Any] = (),
    detectors: Sequence[Any] = (),
    ood: Sequence[str] = (),
    defenses: Sequence[Any] = (),
    arch: str | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool | None = None,
    store: str | os.PathLike | ResultStore | None = None,
    cache: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Report:
    """Evaluate models for robustness and OOD detection on one dataset, each pass computed once.

    Args:
        models: one model or several: training recipes trained once and cached (``plain``,
            ``adv:fgsm:2/255``, ``adv:fgsm:2/255:epochs=15``, ``noise:8/255``, ``oe:noise``,
            ``distill:20``), zoo names (``resnet20``), checkpoint / TorchScript paths, or
            ``nn.Module`` s; a mapping ``{label: model}`` names them in the report.
        dataset: a dataset name (``digits``, ``cifar10`` …, ``imagefolder:PATH``) or a loaded
            :class:`~robustood.data.DatasetBundle`; its test split is evaluated.
        attacks: attack specs ``NAME:EPS[:NORM][:key=value]`` (``fgsm:2/255``, ``pgd:8/255``,
            ``pgd:0.5:l2``, ``ddn:1``) or :class:`~robustood.attacks.Attack` objects; eps in [0, 1].
        detectors: OOD detector names (``msp``, ``maxlogit``, ``energy``, ``odin``,
            ``mahalanobis``, ``vim``, ``knn``, ``reconstruction`` …) or configured detectors.
        ood: OOD sets (``noise``, ``gaussian``, ``natural``, ``heldout:K``, a dataset name,
            ``adv:ATTACK`` — adversarial test images, made in the matching attack pass).
        defenses: ``"squeeze"`` or a :class:`~robustood.defenses.FeatureSqueezingDetector`:
            its detection rate under every attack and its false-positive rate on clean data
            (distillation is a model: ``distill:T``).
        arch: zoo architecture of recipe-named models (default: the dataset's default).
        seed: seeds the data split, training, OOD sets and attacks.
        limit: evaluate at most this many test images (and OOD images per set).
        store: a JSON-lines file (or :class:`~robustood.store.ResultStore`) of finished units;
            a rerun with the same arguments resumes from it instead of recomputing.
        cache: the model cache directory; config: training settings of models to train.

    Returns:
        A :class:`~robustood.report.Report`: tidy rows ``(model, input_set, attack, eps,
        metric, value, detector)`` and provenance in ``meta``.

    Raises:
        RobustoodError: bad specs (listing the valid ones), models that do not fit the
            dataset, missing data; all raised before any model is trained where possible.

    Example:
        >>> report = evaluate(["plain", "adv:fgsm:8/255"], "digits", attacks=["fgsm:8/255"],
        ...                   detectors=["maxlogit"], ood=["noise"])  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
    """
    dev = select_device(device)
    labelled = _labelled(models)
    ood = [ood] if isinstance(ood, str) else list(ood)
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    detectors = [detectors] if isinstance(detectors, str) else list(detectors)
    defenses = [defenses] if isinstance(defenses, str) else list(defenses)
    if isinstance(dataset, DatasetBundle):
        bundle = dataset
    else:
        heldout = {int(o.split(":", 1)[1]) for o in ood if o.lower().startswith("heldout:") and o[8:].isdigit()}
        if len(heldout) > 1:
            raise RobustoodError(
                f"one heldout:K per evaluation (models are trained without those K classes): {heldout}"
            )
        bundle = load_dataset(
            dataset, root=data_dir, download=download, heldout=heldout.pop() if heldout else 0, seed=seed
        )
    bundle = bundle.limited(limit)
    plan = _plan(bundle, attacks, detectors, ood, defenses, seed, limit, dev, data_dir, download)
    for spec in labelled.values():
        check_model_spec(spec, bundle)
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    config_record = {
        "models": list(labelled),
        "dataset": bundle.info.key,
        "arch": arch,
        "attacks": list(plan.attacks),
        "detectors": [str(d) for d in plan.detectors],
        "ood": list(ood),
        "defenses": [repr(d) for d in plan.squeeze],
        "limit": limit,
        "batch_size": batch_size,
        "train_config": asdict(config) if config is not None else None,
    }
    prefix = _fingerprint(bundle.info.key, arch, seed, limit, config_record["train_config"])
    ctx = dict(device=dev, batch_size=batch_size, progress=progress, store=store, prefix=prefix)
    rows: list[Row] = []
    model_meta: dict[str, Any] = {}
    for label, spec in labelled.items():
        seed_everything(seed)
        model, meta = resolve_model(
            spec, bundle, arch=arch, seed=seed, device=dev, cache=cache, config=config, progress=progress
        )
        model.eval()
        model_meta[label] = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, type(None)))}
        run = _ModelRun(label, model, bundle, plan, ctx)
        rows += run.clean_unit()
        rows += run.ood_units()
        rows += run.attack_units()
    meta = provenance(config_record, seed, str(dev))
    meta["models"] = model_meta
    return Report(rows, meta)
