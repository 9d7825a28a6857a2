"""The names the command line shows before any heavy import: attacks, detectors, zoo architectures.

``robustood --help`` and ``robustood COMMAND --help`` must start without importing torch,
ART, pytorch-ood or scikit-learn, yet their choices and examples list what the registries
hold. This module is that list, in plain Python; ``tests/test_startup.py`` checks it
against the registries themselves (:data:`robustood.attacks.ATTACKS`,
:data:`robustood.detectors.DETECTORS`, :data:`robustood.models.ZOO`,
:data:`robustood.recipes.RECIPES`), so the two cannot drift apart.
"""

from __future__ import annotations

__all__ = [
    "ATTACKS",
    "ATTACK_ALIASES",
    "BACKENDS",
    "DEFAULT_DETECTORS",
    "DEFAULT_OOD",
    "DETECTORS",
    "PRECISIONS",
    "RECIPES",
    "ZOO",
]

ATTACKS = ("fgsm", "bim", "pgd", "ddn", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "autoattack")
ATTACK_ALIASES = {"aa": "autoattack"}
BACKENDS = ("native", "art")
PRECISIONS = ("fp32", "bf16")
DETECTORS = (
    "ash",
    "dice",
    "energy",
    "entropy",
    "fdbd",
    "feature_reconstruction",
    "gen",
    "gradnorm",
    "klmatching",
    "knn",
    "lts",
    "mahalanobis",
    "maxlogit",
    "msp",
    "nci",
    "nnguide",
    "odin",
    "react",
    "reconstruction",
    "rmd",
    "scale",
    "she",
    "vim",
    "vra",
)
DEFAULT_DETECTORS = ("msp", "maxlogit", "energy")
DEFAULT_OOD = ("noise", "natural")
ZOO = ("small_cnn", "cifar_cnn", "resnet20", "resnet18")
RECIPES = ("plain", "adv", "noise", "oe")
