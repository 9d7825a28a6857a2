"""Defenses: the feature-squeezing detector, defensive distillation, and training objectives that defend.

- :class:`FeatureSqueezingDetector` (Xu et al., NDSS 2018) scores inputs by how far their
  softmax moves when they are squeezed (torch squeezers :class:`BitDepth`,
  :class:`MedianFilter`, :class:`Resample`) and flags those above a calibrated threshold;
  a robustood detector (``make_detector("squeeze")``), measured under attacks by
  :func:`robustood.evaluate` (``defenses=["squeeze"]``); :func:`adaptive_squeeze_attack`
  (He et al., WOOT 2017) is the attack that knows it.
- :func:`distil` (Papernot et al., S&P 2016) trains a teacher at temperature T and a student
  on its soft labels; ``distill:T`` names the (cached) student as a model everywhere.
- :class:`AdversarialTraining`, :class:`NoiseAugmentation`, :class:`OutlierExposure` are
  training objectives for :func:`robustood.train.fit`, named by the recipes
  ``adv:…``, ``noise:…``, ``oe:…`` of :mod:`robustood.recipes`.

ART is imported in one module only (:mod:`robustood.defenses._art`).
"""

from __future__ import annotations

from .adaptive import AdaptiveSqueezeAttack, adaptive_squeeze_attack
from .distillation import Distilled, TemperatureScaled, distil, softmax_sharpness, temperature_cross_entropy
from .squeeze import BitDepth, FeatureSqueezingDetector, MedianFilter, Resample, Squeezer
from .training import AdversarialTraining, NoiseAugmentation, OutlierExposure

__all__ = [
    "AdaptiveSqueezeAttack",
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
    "adaptive_squeeze_attack",
    "distil",
    "softmax_sharpness",
    "temperature_cross_entropy",
]
