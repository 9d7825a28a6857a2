"""Logit detectors (no fitting, score cached logits ``B×K``): MSP, MaxLogit, Energy.

Thin adapters over pytorch-ood's :class:`MaxSoftmax`, :class:`MaxLogit` and
:class:`EnergyBased`; their ``predict_logits`` does the work. Higher = more OOD.
"""

from __future__ import annotations

import torch

from . import _pood
from .base import OODDetector, register_detector

__all__ = ["Energy", "MaxLogit", "MaxSoftmax"]


@register_detector
class MaxSoftmax(OODDetector):
    """Negative maximum softmax probability, ``−max_k softmax(f(x)/t)_k`` in [−1, −1/K].

    Hendrycks & Gimpel, *A Baseline for Detecting Misclassified and Out-of-Distribution
    Examples in Neural Networks*, ICLR 2017.

    >>> MaxSoftmax().score_logits(torch.tensor([[0.0, 0.0]]))
    tensor([-0.5000])
    """

    name = "msp"
    kind = "logits"
    params = ("t",)

    def __init__(self, *, t: float = 1.0) -> None:
        self.t = t
        self._impl = _pood.MaxSoftmax(None, t=t)

    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return self._impl.predict_logits(logits)


@register_detector
class MaxLogit(OODDetector):
    """Negative maximum logit, ``−max_k f_k(x)``.

    Hendrycks et al., *Scaling Out-of-Distribution Detection for Real-World Settings*, ICML 2022.
    """

    name = "maxlogit"
    kind = "logits"

    def __init__(self) -> None:
        self._impl = _pood.MaxLogit(None)

    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return self._impl.predict_logits(logits)


@register_detector
class Energy(OODDetector):
    """Energy, ``−t·logsumexp(f(x)/t)``.

    Liu et al., *Energy-based Out-of-distribution Detection*, NeurIPS 2020.
    """

    name = "energy"
    kind = "logits"
    params = ("t",)

    def __init__(self, *, t: float = 1.0) -> None:
        self.t = t
        self._impl = _pood.EnergyBased(None, t=t)

    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return self._impl.predict_logits(logits)
