"""robustood: adversarial robustness and OOD detection for PyTorch image classifiers.

Attacks and defenses run on the Adversarial Robustness Toolbox (ART), OOD detectors
on pytorch-ood; robustood puts them behind one evaluation API and a CLI. Inputs are
images in [0, 1] and every epsilon is in those pixel units.
"""

__version__ = "0.1.0"

from .data import DATASETS, OOD_SOURCES, DatasetBundle, DatasetInfo, load_dataset, load_ood
from .errors import (
    DatasetUnavailableError,
    IncompatibleModelError,
    NotFittedError,
    RobustoodError,
    UnsafeCheckpointError,
)
from .evaluate import evaluate
from .models import ZOO, Classifier, Normalize, build_model, load_model
from .report import Report, Row
from .train import TrainConfig, fit, pretrained
from .utils import parse_eps, parse_eps_list

__all__ = [
    "DATASETS",
    "OOD_SOURCES",
    "ZOO",
    "Classifier",
    "DatasetBundle",
    "DatasetInfo",
    "DatasetUnavailableError",
    "IncompatibleModelError",
    "Normalize",
    "NotFittedError",
    "Report",
    "RobustoodError",
    "Row",
    "TrainConfig",
    "UnsafeCheckpointError",
    "__version__",
    "build_model",
    "evaluate",
    "fit",
    "load_dataset",
    "load_model",
    "load_ood",
    "parse_eps",
    "parse_eps_list",
    "pretrained",
]
