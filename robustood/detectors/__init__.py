"""OOD detectors over pytorch-ood, a reconstruction detector, metrics and the one-pass evaluation.

Every detector scores an input with a float, **higher = more OOD** (pytorch-ood's
convention). One generic adapter, :class:`OODDetector`, puts any pytorch-ood ``Detector``
behind robustood's interface; :data:`DETECTORS` is the table of named ones: ``msp``,
``maxlogit``, ``energy`` (logits), ``mahalanobis``, ``vim``, ``knn`` (features, fitted),
``odin`` (gradient), ``reconstruction`` and ``feature_reconstruction`` (autoencoder error,
fitted) and ``squeeze`` (feature squeezing, :mod:`robustood.defenses`). pytorch-ood itself
is imported when a detector is first built.

Example:
    ```python
    from pytorch_ood.detector import EnergyBased
    from robustood.detectors import make_detector
    from robustood.evaluate import run_ood

    result = run_ood(model, bundle, ["msp", make_detector("knn", k=20), EnergyBased(None)], ["noise"])
    result.rows[0]["auroc"]
    ```
"""

from __future__ import annotations

from typing import Any

from .adapter import (
    KNN,
    ODIN,
    Energy,
    FeatureReconstruction,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    OODDetector,
    Reconstruction,
    ViM,
    make_detector,
)
from .base import BaseDetector, Kind, batches, extract_features, feature_split
from .metrics import METRICS, calibrate_threshold, ood_metrics
from .registry import DETECTORS, DetectorSpec, parse_detectors, register_detector
from .run import (
    DEFAULT_DETECTORS,
    DEFAULT_OOD,
    OODResult,
    detector_labels,
    fit_detectors,
    score_batch,
)
from .scores import load_scores, save_scores

__all__ = [
    "DEFAULT_DETECTORS",
    "DEFAULT_OOD",
    "DETECTORS",
    "KNN",
    "METRICS",
    "ODIN",
    "BaseDetector",
    "DetectorSpec",
    "Energy",
    "FeatureReconstruction",
    "Kind",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "OODDetector",
    "OODResult",
    "Reconstruction",
    "ReconstructionDetector",
    "ViM",
    "batches",
    "calibrate_threshold",
    "detector_labels",
    "extract_features",
    "feature_split",
    "fit_detectors",
    "load_scores",
    "make_detector",
    "ood_metrics",
    "parse_detectors",
    "register_detector",
    "save_scores",
    "score_batch",
]


def __getattr__(name: str) -> Any:
    """``ReconstructionDetector`` subclasses pytorch-ood's ``Detector``: imported (with pytorch-ood) on first use."""
    if name == "ReconstructionDetector":
        from .reconstruction import ReconstructionDetector

        return ReconstructionDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
