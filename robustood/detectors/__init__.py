"""OOD detectors over pytorch-ood, a reconstruction detector, metrics and the one-pass evaluation.

Every detector scores an input with a float, **higher = more OOD** (pytorch-ood's
convention). Registry keys: ``msp``, ``maxlogit``, ``energy`` (logits), ``mahalanobis``,
``vim``, ``knn`` (features, fitted), ``odin`` (gradient), ``reconstruction`` and
``feature_reconstruction`` (autoencoder error, fitted).

Example:
    ```python
    from robustood.detectors import run_ood

    result = run_ood(model, bundle, ["msp", "energy"], ["noise"])
    result.rows[0]["auroc"]
    ```
"""

from __future__ import annotations

from . import features as _features  # noqa: F401  (registers the detectors)
from . import logits as _logits  # noqa: F401
from . import odin as _odin  # noqa: F401
from . import reconstruction as _reconstruction  # noqa: F401
from .base import DETECTORS, OODDetector, extract_features, make_detector, parse_detectors, register_detector
from .features import KNN, Mahalanobis, ViM
from .logits import Energy, MaxLogit, MaxSoftmax
from .metrics import METRICS, calibrate_threshold, ood_metrics
from .odin import ODIN
from .reconstruction import FeatureReconstruction, Reconstruction, ReconstructionDetector
from .run import DEFAULT_DETECTORS, DEFAULT_OOD, AdversarialInputs, OODResult, resolve_ood_sets, run_ood
from .scores import load_scores, save_scores

__all__ = [
    "DEFAULT_DETECTORS",
    "DEFAULT_OOD",
    "DETECTORS",
    "KNN",
    "METRICS",
    "ODIN",
    "AdversarialInputs",
    "Energy",
    "FeatureReconstruction",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "OODDetector",
    "OODResult",
    "Reconstruction",
    "ReconstructionDetector",
    "ViM",
    "calibrate_threshold",
    "extract_features",
    "load_scores",
    "make_detector",
    "ood_metrics",
    "parse_detectors",
    "register_detector",
    "resolve_ood_sets",
    "run_ood",
    "save_scores",
]
