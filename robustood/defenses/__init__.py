"""Defenses: the feature-squeezing detector, defensive distillation, and training recipes that defend.

- :class:`FeatureSqueezingDetector` (Xu et al., NDSS 2018) scores inputs by how far their
  softmax moves when they are squeezed (torch squeezers :class:`BitDepth`,
  :class:`MedianFilter`, :class:`Resample`) and flags those above a calibrated threshold;
  a robustood detector (``make_detector("squeeze")``). :func:`squeezing_rows` measures it
  under attacks.
- :func:`distil` (Papernot et al., S&P 2016) trains a teacher at temperature T and a student
  on its soft labels; :func:`distillation_rows` attacks both ways (softmax and logits / T).
- :class:`AdversarialTraining`, :class:`NoiseAugmentation`, :class:`OutlierExposure` are
  training objectives for :func:`robustood.train.fit`, named by the recipes
  ``adv:…``, ``noise:…``, ``oe:…`` (registered when this package is imported).

ART is imported in one module only (:mod:`robustood.defenses._art`).
"""

from __future__ import annotations

from . import recipes as _recipes  # noqa: F401  (registers the training recipes)
from .distillation import (
    Distilled,
    TemperatureScaled,
    distil,
    distillation_rows,
    distilled_pretrained,
    softmax_sharpness,
    temperature_cross_entropy,
)
from .recipes import adversarial_recipe, noise_recipe, oe_recipe
from .squeeze import BitDepth, FeatureSqueezingDetector, MedianFilter, Resample, Squeezer, squeezing_rows
from .training import AdversarialTraining, NoiseAugmentation, OutlierExposure

__all__ = [
    "AdversarialTraining",
    "BitDepth",
    "Distilled",
    "FeatureSqueezingDetector",
    "MedianFilter",
    "NoiseAugmentation",
    "OutlierExposure",
    "Resample",
    "Squeezer",
    "TemperatureScaled",
    "adversarial_recipe",
    "distil",
    "distillation_rows",
    "distilled_pretrained",
    "noise_recipe",
    "oe_recipe",
    "softmax_sharpness",
    "squeezing_rows",
    "temperature_cross_entropy",
]
