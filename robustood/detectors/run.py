"""Many detectors on one batch: fitting them together, scoring them on one shared forward pass.

The evaluation engine (:mod:`robustood.evaluate`) drives these per batch. Detectors that
only need logits or penultimate features share **one** forward pass per batch
(``model.features`` then ``model.head``; a model without them shares logits only);
gradient (ODIN) and reconstruction detectors run their own pass. :class:`OODResult` is
what :func:`robustood.evaluate.run_ood` and ``robustood ood`` return.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import RobustoodError
from .base import BaseDetector, extract_features, features_logits
from .scores import save_scores

__all__ = [
    "DEFAULT_DETECTORS",
    "DEFAULT_OOD",
    "OODResult",
    "detector_labels",
    "fit_detectors",
    "score_batch",
]

log = logging.getLogger(__name__)

DEFAULT_DETECTORS = ("msp", "maxlogit", "energy")
DEFAULT_OOD = ("noise", "natural")


@dataclass
class OODResult:
    """Tidy rows (one per detector × OOD set, plain floats) and, if kept, every sample's score.

    ``scores`` is ``{set: {detector: float64 array}}`` with the ID test scores under ``"id"``;
    ``thresholds`` the per-detector thresholds calibrated on the ID validation split;
    ``attacked`` the kept outputs of detector attacks (see :attr:`robustood.report.Report.attacked`).
    """

    rows: list[dict[str, Any]]
    id_accuracy: float
    thresholds: dict[str, float] = field(default_factory=dict)
    scores: dict[str, dict[str, np.ndarray]] | None = field(default=None, repr=False)
    attacked: dict[str, dict[str, Any]] | None = field(default=None, repr=False)

    def save_scores(self, path: str | os.PathLike) -> Path:
        """Write every sample's score (``.npz`` or ``.csv``), see :func:`~robustood.detectors.save_scores`
        (with the attacked scores and inputs of detector attacks where they were kept)."""
        if self.scores is None:
            raise RobustoodError("no per-sample scores were kept; call run_ood(..., keep_scores=True)")
        return save_scores(self.scores, path, self.attacked)


def detector_labels(detectors: Sequence[BaseDetector]) -> list[str]:
    """Table labels of ``detectors``: the name, or the ``repr`` where a name repeats (``MaxSoftmax(t=2.0)``)."""
    names = [d.name for d in detectors]
    return [repr(d) if names.count(d.name) > 1 else d.name for d in detectors]


def fit_detectors(
    detectors: Sequence[Any],
    model: nn.Module,
    train_data: Dataset,
    *,
    device: torch.device | str,
    batch_size: int = 256,
    progress: bool | None = None,
) -> list[BaseDetector]:
    """Fit every unfitted detector on ID training data; feature detectors share one feature extraction.

    Names and pytorch-ood objects are made detectors first (:func:`make_detector`; a wrapped
    pytorch-ood object is fitted in place); returns the detectors, fitted. Under ``torchrun``
    the shared feature extraction is sharded across ranks and pooled, so every rank fits the
    same feature detectors on the same features; other detectors fit on every rank alike.
    """
    from .adapter import make_detector

    detectors = [make_detector(d) for d in detectors]
    todo = [d for d in detectors if not d.is_fitted]
    shared = [d for d in todo if d.kind == "features" and getattr(d, "needs_data", True)]
    if shared:
        z, y = _pooled_features(model, train_data, device, batch_size, progress)
        for d in shared:
            d.fit_features(z, y, model=model)
        del z
    for d in todo:
        if d not in shared:
            d.fit(model, train_data, device, batch_size=batch_size, progress=progress)
    return detectors


def _pooled_features(model: nn.Module, data: Dataset, device, batch_size: int, progress: bool | None):
    """The training features ``N×D`` and labels of ``data``; under ``torchrun`` each rank extracts
    its block of whole batches and every rank gets all of them, in order."""
    from torch.utils.data import Subset

    from ..distributed import all_gather_cat, shard_batches, world

    w = world()
    if not w.distributed:
        return extract_features(model, data, device, batch_size=batch_size, progress=progress)
    block = shard_batches(len(data), batch_size, w)  # type: ignore[arg-type]
    z, y = torch.empty(0, device=device), torch.empty(0, dtype=torch.int64)  # a rank past the last batch adds nothing
    if len(block):
        z, y = extract_features(
            model, Subset(data, block), device, batch_size=batch_size, progress=progress if w.is_main else False
        )
    return all_gather_cat(z, w), all_gather_cat(y, w)


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
    with torch.no_grad():
        if any(d.kind == "features" for d in detectors):
            z, logits = features_logits(model, x)
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
