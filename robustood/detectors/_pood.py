"""The one boundary module to pytorch-ood 0.4: every import of the library goes through here.

Everything else in :mod:`robustood.detectors` speaks torch tensors and uses the names
re-exported below. pytorch-ood's conventions hold throughout: higher score = more OOD,
OOD labels are negative, shapes ``B×C`` (logits) and ``B×D`` (features).
"""

from __future__ import annotations

from pytorch_ood.api import Detector, RequiresFittingException
from pytorch_ood.detector import KNN, ODIN, EnergyBased, Mahalanobis, MaxLogit, MaxSoftmax, ViM
from pytorch_ood.metrics import OODMetrics

__all__ = [
    "KNN",
    "ODIN",
    "Detector",
    "EnergyBased",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "OODMetrics",
    "RequiresFittingException",
    "ViM",
]
