"""ODIN: temperature-scaled softmax after a small input perturbation (its own gradient pass)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import RobustoodError
from . import _pood
from .base import OODDetector, register_detector

__all__ = ["ODIN"]


@register_detector
class ODIN(OODDetector):
    """``−max_k softmax(f(x̂)/T)_k`` with ``x̂ = x − eps·sign(∇ₓ CE(f(x)/T, ŷ))``.

    Liang et al., *Enhancing The Reliability of Out-of-distribution Image Detection in
    Neural Networks*, ICLR 2018. Adapter over pytorch-ood's :class:`ODIN`. Inputs are images
    in [0, 1] and robustood models normalise inside themselves, so ``eps`` is in pixel units
    (the default 0.0014 ≈ 0.36/255). Needs one forward-backward and one forward pass per
    batch, so it never shares the cached forward pass.
    """

    name = "odin"
    kind = "input"
    params = ("eps", "temperature")

    def __init__(self, *, eps: float = 0.0014, temperature: float = 1000.0) -> None:
        if not 0 <= eps <= 1:
            raise RobustoodError(f"ODIN eps must be in [0, 1] (pixel units), got {eps}")
        if not temperature > 0:
            raise RobustoodError(f"ODIN temperature must be positive, got {temperature}")
        self.eps = eps
        self.temperature = temperature

    def score(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        detector = _pood.ODIN(model, eps=self.eps, temperature=self.temperature)
        return detector.predict(x).detach()
