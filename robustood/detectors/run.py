"""Score ID and OOD data with many detectors in one streamed pass, and measure how well they separate.

:func:`run_ood` is the library entry point behind ``robustood ood``. Detectors that only
need logits or penultimate features share **one** forward pass per batch
(``model.features`` then ``model.head``; a model without them shares logits only);
gradient (ODIN) and reconstruction detectors run their own pass. Batches are streamed and
only the scores are kept, so memory is bounded by the batch size, not the dataset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ..data import DatasetBundle, conform_images, load_ood
from ..errors import RobustoodError
from .adapter import make_detector
from .base import BaseDetector, batches, extract_features, feature_split
from .metrics import calibrate_threshold, ood_metrics
from .scores import ID_SET, save_scores

__all__ = [
    "DEFAULT_DETECTORS",
    "DEFAULT_OOD",
    "AdversarialInputs",
    "OODResult",
    "detector_labels",
    "fit_detectors",
    "resolve_ood_sets",
    "run_ood",
    "score_batch",
    "stream_scores",
]

log = logging.getLogger(__name__)

DEFAULT_DETECTORS = ("msp", "maxlogit", "energy")
DEFAULT_OOD = ("noise", "natural")

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class AdversarialInputs:
    """An OOD set made on the fly: ``attack(model, x, y)`` applied to each batch of ``source``
    (ID images with their labels), e.g. ``--ood adv:fgsm:2/255``."""

    attack: Attack
    source: Dataset

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]


OODSet = Dataset | AdversarialInputs


@dataclass
class OODResult:
    """Tidy rows (one per detector × OOD set, plain floats) and, if kept, every sample's score.

    ``scores`` is ``{set: {detector: float64 array}}`` with the ID test scores under ``"id"``;
    ``thresholds`` the per-detector thresholds calibrated on the ID validation split.
    """

    rows: list[dict[str, Any]]
    id_accuracy: float
    thresholds: dict[str, float] = field(default_factory=dict)
    scores: dict[str, dict[str, np.ndarray]] | None = field(default=None, repr=False)

    def save_scores(self, path: str | os.PathLike) -> Path:
        """Write every sample's score (``.npz`` or ``.csv``), see :func:`~robustood.detectors.save_scores`."""
        if self.scores is None:
            raise RobustoodError("no per-sample scores were kept; call run_ood(..., keep_scores=True)")
        return save_scores(self.scores, path)


def resolve_ood_sets(
    specs: Iterable[str],
    bundle: DatasetBundle,
    *,
    n: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, OODSet]:
    """OOD sets by name (see :func:`robustood.data.load_ood`), plus ``adv:ATTACK`` — adversarial
    versions of the ID test split made by ``robustood.attacks.parse_attack_spec(ATTACK)``."""
    sets: dict[str, OODSet] = {}
    for spec in specs:
        key = spec.strip()
        if not key:
            raise RobustoodError("empty OOD set name; use e.g. noise,natural,heldout:3,adv:fgsm:2/255")
        if key.lower().startswith("adv:"):
            try:
                from ..attacks import parse_attack_spec
            except ImportError:
                raise RobustoodError(
                    f"OOD set {key!r} needs robustood.attacks, which is not available in this installation"
                ) from None
            attack = parse_attack_spec(key.split(":", 1)[1])
            source = bundle.test
            if n is not None and n < len(source):  # type: ignore[arg-type]
                source = Subset(source, range(n))
            sets[key] = AdversarialInputs(attack, source)
        else:
            sets[key] = load_ood(key, bundle, n=n, seed=seed, root=root, download=download)
    return sets


def detector_labels(detectors: Sequence[BaseDetector]) -> list[str]:
    """Table labels of ``detectors``: the name, or the ``repr`` where a name repeats (``MaxSoftmax(t=2.0)``)."""
    names = [d.name for d in detectors]
    return [repr(d) if names.count(d.name) > 1 else d.name for d in detectors]


def fit_detectors(
    detectors: Sequence[BaseDetector],
    model: nn.Module,
    train_data: Dataset,
    *,
    device: torch.device | str,
    batch_size: int = 256,
    progress: bool | None = None,
) -> None:
    """Fit every unfitted detector on ID training data; feature detectors share one feature extraction."""
    todo = [d for d in detectors if not d.is_fitted]
    shared = [d for d in todo if d.kind == "features"]
    if shared:
        z, y = extract_features(model, train_data, device, batch_size=batch_size, progress=progress)
        for d in shared:
            d.fit_features(z, y, model=model)
        del z
    for d in todo:
        if d not in shared:
            d.fit(model, train_data, device, batch_size=batch_size, progress=progress)


def score_batch(
    model: nn.Module,
    x: torch.Tensor,
    detectors: Sequence[BaseDetector],
    *,
    logits: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every detector's scores ``[B]`` (on the device) for one batch, and the batch's logits.

    Logit and feature detectors share one forward pass (``model.features`` then
    ``model.head`` when any detector needs features); ``logits`` already computed by the
    caller are reused when no detector needs features. Input detectors run their own pass.
    """
    split = feature_split(model) if any(d.kind == "features" for d in detectors) else None
    with torch.no_grad():
        if split is not None:
            z = split[0](x)
            logits = split[1](z)
        else:
            z = None
            if logits is None:
                logits = model(x)
        out = [d.score_cached(logits, z) if d.kind in ("logits", "features") else None for d in detectors]
    for i, d in enumerate(detectors):
        if d.kind == "input":
            with torch.enable_grad():
                out[i] = d.score(model, x).detach()
    return out, logits  # type: ignore[return-value]


def stream_scores(
    model: nn.Module,
    data: OODSet,
    detectors: Sequence[BaseDetector],
    *,
    shape: tuple[int, ...],
    device: torch.device | str,
    batch_size: int = 256,
    progress: bool | None = None,
    desc: str = "scores",
    keep_logits: bool = False,
) -> tuple[list[torch.Tensor], int, torch.Tensor | None]:
    """Score ``data`` batch by batch (images of another shape than ``shape`` are converted, an
    :class:`AdversarialInputs` set is attacked per batch on ``device``).

    Returns:
        scores ``[N]`` (CPU, float32) per detector, the number of correct predictions (labels
        of ``data``) and, if ``keep_logits``, the logits ``N×K`` (CPU, float32), else ``None``.
    """
    attack = data.attack if isinstance(data, AdversarialInputs) else None
    source = data.source if isinstance(data, AdversarialInputs) else data
    out: list[list[torch.Tensor]] = [[] for _ in detectors]
    kept: list[torch.Tensor] = []
    correct = 0
    total = -(-len(source) // batch_size)  # type: ignore[arg-type]
    for x, y in tqdm(batches(source, batch_size), desc=desc, total=total, leave=False, disable=_off(progress)):
        if tuple(x.shape[1:]) != tuple(shape):
            x = conform_images(x, shape)
        x = x.to(device, non_blocking=True)
        if attack is not None:
            with torch.enable_grad():
                x = attack(model, x, y.to(device)).detach()
        scores, logits = score_batch(model, x, detectors)
        correct += int((logits.argmax(1).cpu() == y).sum())
        if keep_logits:
            kept.append(logits.float().cpu())
        for i, s in enumerate(scores):
            out[i].append(s.float().cpu())
    logits_all = torch.cat(kept) if kept else None
    return [torch.cat(o) if o else torch.empty(0) for o in out], correct, logits_all


def _off(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def run_ood(
    model: nn.Module,
    bundle: DatasetBundle,
    detectors: Sequence[Any] = DEFAULT_DETECTORS,
    ood_sets: Mapping[str, OODSet] | Sequence[str] = DEFAULT_OOD,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    progress: bool | None = None,
    keep_scores: bool = False,
    calibrate: bool = True,
) -> OODResult:
    """Fit, score and measure: ``bundle.test`` (ID) against each OOD set, for every detector.

    Args:
        model: classifier of images ``B×C×H×W`` in [0, 1] (on ``device``); a robustood
            :class:`~robustood.models.Classifier` lets feature detectors share the pass.
        bundle: the ID dataset: ``train`` fits detectors, ``val`` calibrates thresholds,
            ``test`` is scored as ID.
        detectors: registry names (``msp``, ``energy`` …), configured detectors or pytorch-ood
            ``Detector`` objects (see :func:`make_detector`); unfitted ones are fitted on ``bundle.train``.
        ood_sets: ``{name: dataset}`` (labels ignored; images of another shape are converted with
            :func:`~robustood.data.conform_images`) or names for :func:`resolve_ood_sets`.
        keep_scores: keep every sample's score in :attr:`OODResult.scores` (plots, ``--save-scores``).
        calibrate: score ``bundle.val`` to set each detector's threshold (95 % of ID inputs kept)
            for ``detection_accuracy``.

    Returns:
        :class:`OODResult` with rows ``detector, ood_set, auroc, aupr_in, aupr_out,
        fpr_at_95_tpr, detection_accuracy, id_accuracy, n_id, n_ood``.

    Raises:
        RobustoodError: unknown detector or OOD set, an empty set, a feature detector on a
            model without ``features``.
    """
    dets = [make_detector(d) for d in detectors]
    if not dets:
        raise RobustoodError("no detector given; use e.g. msp, maxlogit, energy")
    if not isinstance(ood_sets, Mapping):
        ood_sets = resolve_ood_sets(list(ood_sets), bundle)
    if not ood_sets:
        raise RobustoodError("no OOD set given; use e.g. noise, natural or heldout:K")
    for name, ds in ood_sets.items():
        if name == ID_SET:
            raise RobustoodError(f"{ID_SET!r} names the in-distribution test scores; give the OOD set another name")
        if len(ds) == 0:  # type: ignore[arg-type]
            raise RobustoodError(f"OOD set {name!r} has zero samples; give it at least one image")
    if len(bundle.test) == 0:  # type: ignore[arg-type]
        raise RobustoodError("the ID test split has zero samples")
    if any(d.kind == "features" for d in dets) and feature_split(model) is None:
        bad = ", ".join(d.name for d in dets if d.kind == "features")
        raise RobustoodError(
            f"detector(s) {bad} need the model's penultimate features (.features(x) and .head, as in a robustood "
            f"Classifier); this model has none — use msp, maxlogit, energy or odin"
        )
    device = torch.device(device)
    model.eval()
    shape = bundle.info.input_shape
    labels = detector_labels(dets)
    fit_detectors(dets, model, bundle.train, device=device, batch_size=batch_size, progress=progress)
    kw = dict(shape=shape, device=device, batch_size=batch_size, progress=progress)

    thresholds: dict[str, float] = {}
    if calibrate and len(bundle.val) > 0:  # type: ignore[arg-type]
        val_scores, _, _ = stream_scores(model, bundle.val, dets, desc="ood: ID val", **kw)
        thresholds = {lab: calibrate_threshold(s) for lab, s in zip(labels, val_scores, strict=True)}
    id_scores, correct, _ = stream_scores(model, bundle.test, dets, desc="ood: ID test", **kw)
    id_accuracy = correct / len(id_scores[0])
    scores: dict[str, dict[str, np.ndarray]] = {ID_SET: {}}
    for lab, s in zip(labels, id_scores, strict=True):
        scores[ID_SET][lab] = s.double().numpy()

    rows: list[dict[str, Any]] = []
    for set_name, ds in ood_sets.items():
        ood_scores, _, _ = stream_scores(model, ds, dets, desc=f"ood: {set_name}", **kw)
        scores[set_name] = {}
        for lab, s_id, s_ood in zip(labels, id_scores, ood_scores, strict=True):
            m = ood_metrics(s_id, s_ood, threshold=thresholds.get(lab))
            rows.append(
                {
                    "detector": lab,
                    "ood_set": set_name,
                    **m,
                    "id_accuracy": id_accuracy,
                    "n_id": len(s_id),
                    "n_ood": len(s_ood),
                }
            )
            scores[set_name][lab] = s_ood.double().numpy()
    return OODResult(rows, id_accuracy, thresholds, scores if keep_scores else None)
