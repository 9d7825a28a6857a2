"""The one boundary module to pytorch-ood 0.4: every import of the library goes through here.

Importing it imports pytorch-ood (seconds), so the rest of :mod:`robustood.detectors`
imports this module only where a detector is built or scored, never at package import.
pytorch-ood's conventions hold throughout: higher score = more OOD, OOD labels are
negative, shapes ``B×C`` (logits) and ``B×D`` (features).
"""

from __future__ import annotations

import torch
from pytorch_ood import detector  # every detector class, for the registry's builders
from pytorch_ood.api import (
    Detector,
    FeaturesDetector,
    GradientDetector,
    LogitsDetector,
    RequiresFittingException,
)
from pytorch_ood.detector import KNN as PoodKNN
from pytorch_ood.detector import KNN as _KNN
from pytorch_ood.detector import ODIN, EnergyBased, Mahalanobis, MaxLogit, MaxSoftmax, ViM
from pytorch_ood.metrics import OODMetrics

__all__ = [
    "KNN",
    "ODIN",
    "Detector",
    "EnergyBased",
    "FeaturesDetector",
    "GradientDetector",
    "LogitsDetector",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "OODMetrics",
    "PoodKNN",
    "RequiresFittingException",
    "ViM",
    "detector",
    "kind_of",
    "reference_of",
]


class KNN(_KNN):
    """pytorch-ood's ``KNN``, fitted from features on any device (its own ``fit_features`` needs CPU tensors)."""

    def fit_features(self, z: torch.Tensor, labels: torch.Tensor) -> KNN:
        return super().fit_features(z.detach().cpu(), labels.cpu())


def kind_of(detector: Detector) -> str:
    """What a pytorch-ood detector scores: ``"logits"``, ``"features"`` (``B×D``) or ``"input"`` (images)."""
    if isinstance(detector, LogitsDetector):
        return "logits"
    if isinstance(detector, FeaturesDetector):
        return "features"
    return "input"


def reference_of(detector: Detector) -> str:
    """The paper of a pytorch-ood detector (``info.paper``) as ``Title, Venue Year``, or ``""``."""
    info = getattr(detector, "info", None)
    paper = getattr(info, "paper", None)
    return f"{paper.title}, {paper.venue} {paper.year}" if paper is not None else ""
