"""robustood: adversarial robustness and OOD detection for PyTorch image classifiers.

Attacks and defenses run on the Adversarial Robustness Toolbox (ART), OOD detectors
on pytorch-ood; robustood puts them behind one evaluation API and a CLI. Inputs are
images in [0, 1] and every epsilon is in those pixel units.

The names below are imported on first use, so ``import robustood`` (and the command
line's ``--help``) starts without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "DATASETS": "data",
    "OOD_SOURCES": "data",
    "DatasetBundle": "data",
    "DatasetInfo": "data",
    "load_dataset": "data",
    "load_ood": "data",
    "DatasetUnavailableError": "errors",
    "IncompatibleModelError": "errors",
    "NotFittedError": "errors",
    "RobustoodError": "errors",
    "UnsafeCheckpointError": "errors",
    "evaluate": "evaluate",
    "run_attack": "evaluate",
    "run_ood": "evaluate",
    "ZOO": "models",
    "Classifier": "models",
    "Normalize": "models",
    "build_model": "models",
    "load_model": "models",
    "Report": "report",
    "Row": "report",
    "TrainConfig": "train",
    "fit": "train",
    "pretrained": "resolve",
    "resolve_model": "resolve",
    "parse_eps": "utils",
    "parse_eps_list": "utils",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'robustood' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from .data import DATASETS, OOD_SOURCES, DatasetBundle, DatasetInfo, load_dataset, load_ood
    from .errors import (
        DatasetUnavailableError,
        IncompatibleModelError,
        NotFittedError,
        RobustoodError,
        UnsafeCheckpointError,
    )
    from .evaluate import evaluate, run_attack, run_ood
    from .models import ZOO, Classifier, Normalize, build_model, load_model
    from .report import Report, Row
    from .resolve import pretrained, resolve_model
    from .train import TrainConfig, fit
    from .utils import parse_eps, parse_eps_list
