"""The one evaluation engine: models × input sets × (attack, eps) × metrics, each pass computed once.

:func:`evaluate` is what every command calls (``attack``, ``ood``, ``defend``, ``compare``)
and the entry point for library users. Per model it runs

1. **one clean pass** over the ID test split: accuracy, the logits kept for every attack,
   the scores of every detector (logit and feature detectors share that pass) and the
   squeezing detector's false positives;
2. **one pass per OOD set**: every detector scores it;
3. **one attack pass per attack × eps**: the adversarial batches are made once and shared
   by the attack metrics, the feature-squeezing detector and the ``adv:…`` OOD sets.

The package is layered: :mod:`~robustood.evaluate.plan` (what to compute, validated
before anything is trained), :mod:`~robustood.evaluate.loop` (the one batch loop),
:mod:`~robustood.evaluate.passes` (passes feeding per-family accumulators) and
:mod:`~robustood.evaluate.engine` (units, the result store). Each finished unit goes to a
:class:`~robustood.store.ResultStore` when ``store=`` names a file, so a crash half-way
keeps the finished rows and a rerun resumes from them. Everything is seeded: the same
call with the same seed on CPU gives identical numbers.
"""

from __future__ import annotations

import numbers
import os
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from ..data import DatasetBundle, as_bundle, as_ood_dataset, load_dataset
from ..distributed import init_from_env
from ..errors import RobustoodError
from ..report import Report, Row
from ..store import ResultStore, provenance
from ..utils import check_seed, select_device
from .engine import (
    ATTACK_METRICS,
    CLEAN,
    DETECTOR_ATTACK_SIDES,
    OOD_METRICS,
    Context,
    ModelRun,
    fingerprint,
    robust_metric,
)
from .plan import AttackPass, Plan, make_plan

__all__ = [
    "ATTACK_METRICS",
    "CLEAN",
    "DETECTOR_ATTACK_SIDES",
    "HEADLINE_METRICS",
    "OOD_METRICS",
    "AttackPass",
    "Plan",
    "detector_attack_rows",
    "evaluate",
    "ood_result",
    "ood_rows",
    "robust_metric",
    "run_attack",
    "run_ood",
]

HEADLINE_METRICS = (
    "accuracy",
    "robust_accuracy",
    "auroc",
    "robust_auroc",
    "fpr_at_95_tpr",
    "detection_rate",
)
"""The metrics of the comparison matrix ``robustood compare`` prints (every metric stays in the rows)."""

ModelLike = str | os.PathLike | nn.Module


def _labelled(models: ModelLike | Sequence[ModelLike] | Mapping[str, ModelLike]) -> dict[str, ModelLike]:
    if isinstance(models, Mapping):
        out = {str(k): v for k, v in models.items()}
    else:
        if isinstance(models, (str, os.PathLike, nn.Module)):
            models = [models]
        if not isinstance(models, Sequence):
            raise RobustoodError(
                f"models must be a model spec, an nn.Module, or a list or dict of them, got {type(models).__name__}"
            )
        out = {}
        for i, m in enumerate(models):
            label = f"model{i}" if isinstance(m, nn.Module) else str(m).strip()
            if label in out:
                raise RobustoodError(f"model {label!r} is given twice")
            out[label] = m
    if not out:
        raise RobustoodError("no model given; use e.g. plain or adv:fgsm:2/255")
    return out


def _listed(value: Any) -> list[Any]:
    """One spec or object, or a sequence of them, as a list."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _bundle(
    dataset: Any, ood: Any, *, data_dir, download: bool, seed: int, num_classes=None, train=None, image_size=None
) -> DatasetBundle:
    if not isinstance(dataset, (str, os.PathLike)):
        return as_bundle(dataset, num_classes=num_classes, train=train)
    if train is not None:
        raise RobustoodError("train= is for data given as tensors or a Dataset; a named dataset has its own splits")
    names = [o for o in ood if isinstance(o, str)] if not isinstance(ood, Mapping) else []
    heldout = {int(o.split(":", 1)[1]) for o in names if o.lower().startswith("heldout:") and o[8:].isdigit()}
    if len(heldout) > 1:
        raise RobustoodError(f"one heldout:K per evaluation (models are trained without those K classes): {heldout}")
    return load_dataset(
        str(dataset),
        root=data_dir,
        download=download,
        heldout=heldout.pop() if heldout else 0,
        seed=seed,
        image_size=image_size,
    )


def _ood_inputs(ood: Any) -> Sequence[str] | Mapping[str, Any]:
    """OOD sets as names, or as ``{name: data}`` where any is data (a Dataset, a DataLoader,
    ``(x, y)`` or ``x`` tensors; unnamed ones become ``ood0``, ``ood1`` …), each as an OOD dataset."""
    if isinstance(ood, Mapping):
        return {str(k): as_ood_dataset(v, str(k)) for k, v in ood.items()}
    if isinstance(ood, (torch.Tensor, Dataset, DataLoader)) or (
        isinstance(ood, tuple) and len(ood) == 2 and all(isinstance(v, torch.Tensor) for v in ood)
    ):
        ood = [ood]
    items = _listed(ood)
    if all(isinstance(o, str) for o in items):
        return items
    return {
        (o if isinstance(o, str) else f"ood{i}"): (o if isinstance(o, str) else as_ood_dataset(o, f"ood{i}"))
        for i, o in enumerate(items)
    }


def evaluate(
    models: ModelLike | Sequence[ModelLike] | Mapping[str, ModelLike],
    dataset: str | DatasetBundle | Dataset | DataLoader | tuple[torch.Tensor, torch.Tensor] = "digits",
    *,
    attacks: Sequence[Any] = (),
    detectors: Sequence[Any] = (),
    ood: Sequence[Any] | Mapping[str, Any] = (),
    defenses: Sequence[Any] = (),
    detector_attacks: Sequence[Any] = (),
    arch: str | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    ood_size: int | None = None,
    keep: int | bool = 0,
    keep_scores: bool = False,
    keep_inputs: bool = False,
    precision: str = "fp32",
    progress: bool | None = None,
    store: str | os.PathLike | ResultStore | None = None,
    cache: str | os.PathLike | None = None,
    config: Any = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    train: Any = None,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    normalize: Any = None,
    features: str | None = None,
    image_size: int | None = None,
) -> Report:
    """Evaluate models for robustness and OOD detection on one dataset, each pass computed once.

    Args:
        models: one model or several: training recipes trained once and cached (``plain``,
            ``adv:fgsm:2/255``, ``adv:fgsm:2/255:epochs=15``, ``noise:8/255``, ``oe:noise``,
            ``distill:20``), zoo names (``resnet20``), checkpoint / TorchScript paths, or
            ``nn.Module`` s; a mapping ``{label: model}`` names them in the report.
        dataset: a dataset name (``digits``, ``cifar10`` …, ``imagefolder:PATH``), a loaded
            :class:`~robustood.data.DatasetBundle` (its test split is evaluated), or your own
            data: ``(x, y)`` tensors (images ``N×C×H×W`` in [0, 1], labels ``N``), a map-style
            ``Dataset`` of ``(image, label)`` pairs or a ``DataLoader`` over one, evaluated as
            the test split (see :meth:`DatasetBundle.from_tensors`, :meth:`DatasetBundle.from_datasets`).
        attacks: attack specs ``NAME:EPS[:NORM][:key=value]`` (``fgsm:2/255``, ``pgd:8/255``,
            ``pgd:0.5:l2``, ``ddn:1``, ``autoattack:8/255`` or ``aa:8/255``, ``apgd-ce:8/255``,
            ``apgd-t:8/255``, ``fab-t:8/255``, ``square:8/255``) or attack objects
            (:func:`robustood.attacks.build_attack`, a wrapped ART attack); eps in [0, 1] pixel
            units, used exactly as given.
        detectors: OOD detector names (``msp``, ``maxlogit``, ``energy``, ``odin``,
            ``mahalanobis``, ``vim``, ``knn``, ``reconstruction`` …) or detector objects.
        ood: OOD sets (``noise``, ``gaussian``, ``natural``, ``heldout:K``, a dataset name,
            ``adv:ATTACK`` — adversarial test images, made in the matching attack pass), your own
            data (a ``Dataset``, ``DataLoader``, ``(x, y)`` or ``x`` tensors; named ``ood0`` …), or
            a mapping ``{name: data}``.
        defenses: ``"squeeze"`` or a :class:`~robustood.defenses.FeatureSqueezingDetector`:
            its detection rate under every attack and its false-positive rate on clean data
            (distillation is a model: ``distill:T``).
        detector_attacks: adaptive attacks on every detector's score (``pgd:8/255``,
            ``pgd:0.5:l2``, ``pgd:8/255:steps=40``; :mod:`robustood.detectors.attack`): ID test
            inputs pushed to raise their OOD score, each plain OOD set pushed to lower it; rows
            ``robust_<metric>`` (both attacked), ``robust_in_<metric>`` (only ID),
            ``robust_out_<metric>`` (only OOD) per detector × OOD set × attack.
        arch: zoo architecture of recipe-named models (default: the dataset's default).
        seed: seeds the data split, training, OOD sets and attacks.
        device: where every pass runs (``None`` or ``"auto"``: CUDA, then MPS, then CPU).
        limit: evaluate at most this many test images; ``ood_size``: images per OOD set
            (default: ``limit``, else as many as the test split).
        keep: keep this many inputs (``True``: all) of each measured attack pass (clean and adversarial
            images, predictions) in :attr:`Report.attacks`; ``keep_scores``: keep every
            input's detector scores in :attr:`Report.scores` (and the attacked scores of
            detector attacks in :attr:`Report.attacked`); ``keep_inputs``: with
            ``keep_scores``, keep the clean and attacked inputs of detector attacks too.
            Either recomputes stored units.
        precision: ``fp32``, or ``bf16`` (CUDA autocast and channels-last) for every pass.
        store: a JSON-lines file (or :class:`~robustood.store.ResultStore`) of finished units;
            a rerun with the same arguments resumes from it instead of recomputing.
        cache: the model cache directory; config: training settings of models to train.
        train: for your own data: the ID training split (same forms as ``dataset``) that
            detectors which need fitting (``knn``, ``mahalanobis`` …) fit on.
        num_classes: the classes of your own data (default: the model's output width where a
            model is an ``nn.Module``, else the largest label + 1), or the classes external
            weights were trained for when more than the dataset's.
        weights: the state_dict file of ``torchvision:NAME`` / ``hub:…`` / ``timm:NAME`` models
            (a torchvision weights name such as ``DEFAULT`` is downloaded).
        normalize: ``"none"`` (models that normalise themselves), ``"MEAN,STD"`` or ``(mean, std)``
            for models from outside the zoo (see :func:`robustood.resolve.resolve_model`).
        features: the layer feature detectors read (a node name from torchvision's
            ``get_graph_node_names``); default: the input of the last ``nn.Linear`` layer.
        image_size: ``imagefolder:PATH`` datasets: resize to this many pixels a side.

    Returns:
        A :class:`~robustood.report.Report`: tidy rows ``(model, input_set, attack, eps,
        metric, value, detector)``, provenance in ``meta``, and the kept per-sample outputs.
        With two or more attacks at one eps, rows of attack ``worst`` give the per-sample worst
        case (``robust_accuracy[worst@EPS]``: robust only if every attack at that eps failed);
        with attacks, rows ``zero_gradient_share``, ``output_change``, ``probability_outputs``
        give the gradient-masking checks and ``meta["warnings"]`` what they point to
        (:mod:`robustood.attacks.masking`).

    Raises:
        RobustoodError: bad specs (listing the valid ones), models that do not fit the
            dataset, missing data; all raised before any model is trained where possible.

    Example:
        >>> report = evaluate(["plain", "adv:fgsm:8/255"], "digits", attacks=["fgsm:8/255"],
        ...                   detectors=["maxlogit"], ood=["noise"])  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
    """
    from ..attacks.metrics import PRECISIONS, precision_context
    from ..resolve import check_model_spec, resolve_model

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RobustoodError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(keep, bool) or (isinstance(keep, int) and keep >= 0)):
        raise RobustoodError(f"keep must be a number of inputs ≥ 0 (or True for all), got {keep!r}")
    seed = check_seed(seed)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise RobustoodError(f"limit must be a positive number of images, got {limit!r}")
    if ood_size is not None and (
        isinstance(ood_size, bool) or not isinstance(ood_size, numbers.Integral) or ood_size < 1
    ):
        raise RobustoodError(f"ood_size must be a positive number of images, got {ood_size!r}")
    if config is not None and not is_dataclass(config):
        raise RobustoodError(f"config must be a robustood.train.TrainConfig, got {type(config).__name__}")
    if precision not in PRECISIONS:
        raise RobustoodError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    w = init_from_env(device)
    dev = select_device(device)
    if not w.is_main:
        progress = False  # one set of bars and unit lines per job: rank 0's
    labelled = _labelled(models)
    ood = _ood_inputs(ood)
    attacks, detectors, defenses = _listed(attacks), _listed(detectors), _listed(defenses)
    if num_classes is None and not isinstance(dataset, (str, os.PathLike, DatasetBundle)):
        num_classes = _output_width(labelled, dataset)
    bundle = _bundle(
        dataset,
        ood,
        data_dir=data_dir,
        download=download,
        seed=seed,
        num_classes=num_classes,
        train=train,
        image_size=image_size,
    ).limited(limit)
    plan = make_plan(
        bundle,
        attacks=attacks,
        detectors=detectors,
        ood=ood,
        defenses=defenses,
        seed=seed,
        ood_size=ood_size if ood_size is not None else limit,
        root=data_dir,
        download=download,
        detector_attacks=_listed(detector_attacks),
    )
    for spec in labelled.values():
        check_model_spec(spec, bundle)
    bundle = bundle.with_num_classes(num_classes)
    keep = len(bundle.test) if keep is True else int(keep)  # type: ignore[arg-type]
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    config_record = {
        "models": list(labelled),
        "dataset": bundle.info.key,
        "arch": arch,
        "attacks": [p.key for p in plan.measured],
        "detectors": [str(d) for d in plan.detectors],
        "ood": list(ood),
        "defenses": [repr(plan.squeeze)] if plan.squeeze is not None else [],
        "limit": limit,
        "batch_size": batch_size,
        "train_config": asdict(config) if config is not None else None,
    }
    # how models from outside the zoo are loaded is part of what a stored unit measured
    sources = [f"{k}={v}" for k, v in (("weights", weights), ("num_classes", num_classes),
               ("normalize", normalize), ("features", features)) if v is not None]  # fmt: skip
    n_units = len(labelled) * (1 + len(plan.ood) + len(plan.passes) + len(plan.detector_attacks))
    tracker = UnitTracker(n_units, progress)
    if plan.detector_attacks:
        config_record["detector_attacks"] = [a.key for a in plan.detector_attacks]
    ctx = Context(
        on_unit=tracker,
        device=dev,
        batch_size=batch_size,
        progress=progress,
        store=store,
        prefix=fingerprint(bundle.info.key, arch, seed, limit, config_record["train_config"], *sources),
        keep=keep,
        keep_scores=keep_scores,
        ood_size=ood_size,
        precision=precision,
        keep_inputs=keep_inputs,
    )
    report = Report([], {})
    model_meta: dict[str, Any] = {}
    thresholds: dict[str, dict[str, float]] = {}
    for label, spec in labelled.items():
        model, meta = resolve_model(
            spec,
            bundle,
            arch=arch,
            seed=seed,
            device=dev,
            cache=cache,
            config=config,
            progress=progress,
            weights=weights,
            num_classes=num_classes,
            normalize=normalize,
            features=features,
        )
        model.eval()
        model_meta[label] = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, type(None)))}
        run = ModelRun(label, model, bundle, plan, ctx)
        try:
            with precision_context(precision, dev, model):
                report.rows += run.run()
        except BaseException:
            tracker.close()
            raise
        if run.attack_results:
            report.attacks[label] = run.attack_results
        if run.scores:
            report.scores[label] = run.scores
        if run.attacked:
            report.attacked[label] = run.attacked
        if run.thresholds:
            thresholds[label] = run.thresholds
    tracker.close()
    report.meta = provenance(config_record, seed, str(dev))
    report.meta["models"] = model_meta
    if thresholds:
        report.meta["thresholds"] = thresholds
    from ..attacks.masking import masking_warnings

    warnings = masking_warnings(report.rows)
    if warnings:
        report.meta["warnings"] = [w.as_dict() for w in warnings]
    return report


def _output_width(labelled: Mapping[str, ModelLike], data: Any) -> int | None:
    """The number of classes of data given without one: the first ``nn.Module`` model's output
    width on one input (``None`` when no model is a module or the probe fails)."""
    from ..models.adapt import logits_of

    module = next((m for m in labelled.values() if isinstance(m, nn.Module)), None)
    if module is None:
        return None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x = torch.as_tensor(data[0])[:1]
    else:
        ds = data.dataset if isinstance(data, DataLoader) else data
        try:
            x = ds[0][0].unsqueeze(0)
        except Exception:  # not indexable the way evaluate() reads data; as_bundle says why
            return None
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            out = logits_of(module(x.float().to(device)))
    except Exception:  # the model check after loading reports incompatible models clearly
        return None
    finally:
        module.train(was_training)
    return int(out.shape[-1]) if out.dim() == 2 else None


class UnitTracker:
    """Progress over a run's units: an overall bar (on a terminal, for more than one unit) and one
    ``INFO`` line on the ``robustood`` logger per finished unit, e.g.
    ``small_cnn: pgd-linf@8/255 done in 3.2 s, robust_accuracy 0.885 [4/6]``."""

    SUMMARY = ("robust_accuracy", "accuracy", "auroc", "detection_rate")

    def __init__(self, total: int, progress: bool | None) -> None:
        from tqdm.auto import tqdm

        from ..distributed import is_main

        self.total, self.done = total, 0
        self.quiet = not is_main()  # under torchrun, rank 0 alone reports progress
        self.bar = tqdm(
            total=total,
            desc="overall",
            unit="unit",
            disable=total <= 1 or self.quiet or (None if progress is None else not progress),
        )

    def __call__(self, model: str, unit: str, rows: list[Row], seconds: float) -> None:
        import logging

        self.done += 1
        self.bar.update(1)
        if self.quiet:
            return
        summary = next(
            (
                f"{metric} " + ", ".join(f"{r.detector + ' ' if r.detector else ''}{r.value:.3f}" for r in hits)
                for metric in self.SUMMARY
                if (hits := [r for r in rows if r.metric == metric])
            ),
            "",
        )
        logging.getLogger("robustood").info(
            "%s: %s done in %.1f s%s [%d/%d]",
            model,
            unit,
            seconds,
            f", {summary}" if summary else "",
            self.done,
            self.total,
        )

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------- one family at a time


def run_attack(
    model: nn.Module,
    dataset: DatasetBundle | Dataset | tuple[torch.Tensor, torch.Tensor],
    attack: Any,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    progress: bool | None = None,
    keep: int | bool = 0,
    precision: str = "fp32",
    class_names: Sequence[str] | None = None,
) -> Any:
    """Attack the test split of ``dataset`` (or the given dataset / ``(x, y)`` tensors) and measure it.

    The engine's clean and attack passes for one model and one attack: returns the
    attack's :class:`~robustood.attacks.AttackResult`. ``keep`` keeps that many inputs
    (``True``: all) as :class:`~robustood.attacks.AttackSamples` on the result.
    """
    from ..attacks.metrics import precision_context

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RobustoodError(f"batch_size must be a positive integer, got {batch_size!r}")
    dev = select_device(device)
    if isinstance(dataset, DatasetBundle):
        data, names = dataset.test, list(class_names or dataset.info.class_names)
    else:
        if isinstance(dataset, tuple):
            if len(dataset) != 2 or not all(isinstance(t, torch.Tensor) for t in dataset):
                raise RobustoodError("give the inputs as a tuple (images, labels) of tensors")
            x, y = dataset
            if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
                raise RobustoodError(
                    f"images must be B×C×H×W with one label each, got images {tuple(x.shape)} and labels "
                    f"{tuple(y.shape)}"
                )
            data = TensorDataset(x, y)
        else:
            data = dataset
        names = list(class_names) if class_names is not None else None
    if isinstance(attack, str):
        from ..attacks import parse_attack_spec

        attack = parse_attack_spec(attack)
    if hasattr(attack, "with_class_names") and names is not None:
        attack = attack.with_class_names(names)
    n_keep = (len(data) if keep is True else int(keep)) if keep else 0  # type: ignore[arg-type]
    from .passes import attack_pass, clean_pass

    kw = dict(device=dev, batch_size=batch_size, progress=progress, class_names=names)
    was_training = model.training
    model.eval()
    try:
        with precision_context(precision, dev, model):
            clean = clean_pass(model, data, desc="clean", **kw)
            out = attack_pass(
                model,
                data,
                AttackPass(attack, measured=True),
                clean_logits=clean.logits,
                keep=n_keep,
                precision=precision,
                desc=attack.label,
                **kw,
            )
    finally:
        model.train(was_training)
    return out.result


def run_ood(
    model: nn.Module,
    bundle: DatasetBundle,
    detectors: Sequence[Any] = ("msp", "maxlogit", "energy"),
    ood_sets: Mapping[str, Dataset] | Sequence[str] = ("noise", "natural"),
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    progress: bool | None = None,
    keep_scores: bool = False,
    calibrate: bool = True,
) -> Any:
    """Fit, score and measure one model's detectors: ``bundle.test`` (ID) against each OOD set.

    ``calibrate=False`` skips the validation pass that sets each detector's threshold
    (``detection_accuracy`` is then NaN). The engine's clean and OOD passes for one model; returns an
    :class:`~robustood.detectors.OODResult` (rows ``detector, ood_set, auroc, aupr_in,
    aupr_out, fpr_at_95_tpr, detection_accuracy, id_accuracy, n_id, n_ood``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RobustoodError(f"batch_size must be a positive integer, got {batch_size!r}")
    detectors = list(detectors)
    if not detectors:
        raise RobustoodError("no detector given; use e.g. msp, maxlogit, energy")
    if not len(ood_sets):
        raise RobustoodError("no OOD set given; use e.g. noise, natural or heldout:K")
    if len(bundle.test) == 0:  # type: ignore[arg-type]
        raise RobustoodError("the ID test split has zero samples")
    if not calibrate:
        bundle = replace(bundle, val=Subset(bundle.val, []))
    report = evaluate(
        {"model": model},
        bundle,
        detectors=detectors,
        ood=ood_sets,
        device=device,
        batch_size=batch_size,
        progress=progress,
        keep_scores=keep_scores,
    )
    return ood_result(report, "model", keep_scores=keep_scores)


def ood_rows(report: Report, model: str) -> list[dict[str, Any]]:
    """One row per OOD set × detector of ``model``: the OOD metrics, ``id_accuracy``, ``n_id``, ``n_ood``."""
    rows: list[Row] = [r for r in report.rows if r.model == model]
    n_id = next(r.value for r in rows if r.input_set == CLEAN and r.metric == "n" and not r.attack)
    accuracy = next(r.value for r in rows if r.input_set == CLEAN and r.metric == "accuracy" and not r.attack)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    n_ood: dict[str, float] = {}
    for r in rows:
        if r.input_set == CLEAN or r.attack:
            continue
        if r.metric == "n":
            n_ood[r.input_set] = r.value
        elif r.detector and r.metric in OOD_METRICS:
            out.setdefault((r.input_set, r.detector), {"detector": r.detector, "ood_set": r.input_set})[r.metric] = (
                r.value
            )
    for (set_name, _), row in out.items():
        row.update(id_accuracy=accuracy, n_id=int(n_id), n_ood=int(n_ood[set_name]))
    order = {name: i for i, name in enumerate(report.meta.get("config", {}).get("ood", []))}
    return sorted(out.values(), key=lambda row: order.get(row["ood_set"], len(order)))


def detector_attack_rows(report: Report, model: str) -> list[dict[str, Any]]:
    """One row per detector × OOD set × detector attack × side of ``model``: ``detector``,
    ``ood_set``, ``attack`` (``pgd-linf``), ``eps`` (float), ``side`` (``out``: only the OOD
    inputs attacked, ``in``: only the ID inputs, ``both``) and the OOD metrics under that attack."""
    names = {robust_metric(m, side): (m, side) for m in OOD_METRICS for side in DETECTOR_ATTACK_SIDES}
    out: dict[tuple, dict[str, Any]] = {}
    for r in report.rows:
        if r.model != model or not r.attack or r.metric not in names or not r.detector:
            continue
        metric, side = names[r.metric]
        key = (r.detector, r.input_set, r.attack, r.eps, side)
        row = out.setdefault(
            key, {"detector": r.detector, "ood_set": r.input_set, "attack": r.attack, "eps": r.eps, "side": side}
        )
        row[metric] = r.value
    sides = {s: i for i, s in enumerate(DETECTOR_ATTACK_SIDES)}
    attacks = {k: i for i, k in enumerate(dict.fromkeys((k[2], k[3]) for k in out))}
    cells = {k: i for i, k in enumerate(dict.fromkeys((k[0], k[1]) for k in out))}
    return sorted(
        out.values(),
        key=lambda r: (attacks[(r["attack"], r["eps"])], cells[(r["detector"], r["ood_set"])], sides[r["side"]]),
    )


def ood_result(report: Report, model: str, *, keep_scores: bool) -> Any:
    """``model``'s OOD rows as an :class:`~robustood.detectors.OODResult` (rows, ID accuracy,
    thresholds, and the kept scores in the order the OOD sets were given)."""
    from ..detectors import OODResult

    rows = ood_rows(report, model)
    accuracy = next(r.value for r in report.rows if r.model == model and r.metric == "accuracy" and not r.attack)
    scores = None
    if keep_scores:
        kept = report.scores.get(model, {})
        order = ["id", *report.meta.get("config", {}).get("ood", [])]
        scores = {name: kept[name] for name in order if name in kept}
    thresholds = report.meta.get("thresholds", {}).get(model, {})
    attacked = report.attacked.get(model) if keep_scores else None
    return OODResult(rows, accuracy, dict(thresholds), scores, attacked)


class _CallableModule(types.ModuleType):
    """``robustood.evaluate`` is both this package and the function :func:`evaluate`: whichever
    the attribute holds (the import system rebinds it to the package), calling it evaluates."""

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
