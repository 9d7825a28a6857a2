"""Feature detectors (fitted on penultimate features ``N×D`` of the ID training set):
Mahalanobis, ViM and KNN, as adapters over pytorch-ood's ``fit_features`` / ``predict_features``."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import NotFittedError, RobustoodError
from . import _pood
from .base import OODDetector, feature_split, register_detector

__all__ = ["KNN", "Mahalanobis", "ViM"]


class _FeatureDetector(OODDetector):
    kind = "features"
    requires_fit = True

    def _predict(self, features: torch.Tensor) -> torch.Tensor:
        self.check_fitted()
        try:
            return self.impl_.predict_features(features).float()
        except _pood.RequiresFittingException:  # pragma: no cover - guarded by check_fitted
            raise NotFittedError(f"detector {self.name!r} is not fitted; call .fit(model, train_data)") from None

    def score_features(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        return self._predict(features)


def _labels(labels: torch.Tensor, name: str) -> torch.Tensor:
    labels = torch.as_tensor(labels).long()
    if labels.numel() == 0 or (labels < 0).any():
        raise RobustoodError(f"fit {name} on in-distribution training data (class labels 0…K−1), not OOD data")
    return labels


@register_detector
class Mahalanobis(_FeatureDetector):
    """Negative class-conditional Gaussian log-density (shared covariance) of the features:
    half the squared Mahalanobis distance to the closest class mean.

    Lee et al., *A Simple Unified Framework for Detecting Out-of-Distribution Samples and
    Adversarial Attacks*, NeurIPS 2018 (without input preprocessing or layer ensembles).
    Every class must occur in the fitting data.
    """

    name = "mahalanobis"

    def fit_features(self, features: torch.Tensor, labels: torch.Tensor, *, model: nn.Module | None = None):
        labels = _labels(labels, self.name)
        present = labels.unique()
        if len(present) != int(labels.max()) + 1:
            raise RobustoodError("Mahalanobis needs training samples of every class 0…K−1; some classes are missing")
        self.impl_ = _pood.Mahalanobis(None).fit_features(features.detach().float(), labels.to(features.device))
        self.fitted_ = True
        return self


@register_detector
class ViM(_FeatureDetector):
    """Virtual-logit Matching: energy minus a virtual logit, the feature norm outside the
    ``d``-dimensional principal subspace of the (origin-shifted) ID features.

    Wang et al., *ViM: Out-Of-Distribution with Virtual-logit Matching*, CVPR 2022. Needs the
    model's final linear layer (``model.head``); ``d`` is capped at half the feature size.
    """

    name = "vim"
    params = ("d",)

    def __init__(self, *, d: int = 64) -> None:
        if d < 1:
            raise RobustoodError(f"ViM subspace dimension d must be at least 1, got {d}")
        self.d = d

    def fit_features(self, features: torch.Tensor, labels: torch.Tensor, *, model: nn.Module | None = None):
        split = feature_split(model) if model is not None else None
        head = split[1] if split is not None else None
        if not isinstance(head, nn.Linear):
            raise RobustoodError("ViM needs the model's final nn.Linear layer as model.head (a robustood Classifier)")
        d = min(self.d, max(1, features.shape[1] // 2))
        w, b = head.weight.detach().float(), head.bias.detach().float()
        impl = _pood.ViM(None, d=d, w=w.to(features.device), b=b.to(features.device))
        self.impl_ = impl.fit_features(features.detach().float(), labels)
        self.fitted_ = True
        return self


@register_detector
class KNN(_FeatureDetector):
    """Distance to the ``k``-th nearest ID training feature (features scaled to unit length).

    Sun et al., *Out-of-Distribution Detection with Deep Nearest Neighbors*, ICML 2022.
    Searched with scikit-learn on the CPU.
    """

    name = "knn"
    params = ("k",)

    def __init__(self, *, k: int = 50) -> None:
        if k < 1:
            raise RobustoodError(f"KNN needs k ≥ 1 neighbours, got {k}")
        self.k = k

    def fit_features(self, features: torch.Tensor, labels: torch.Tensor, *, model: nn.Module | None = None):
        labels = _labels(labels, self.name)
        if len(labels) < self.k:
            raise RobustoodError(f"KNN with k={self.k} needs at least {self.k} training samples, got {len(labels)}")
        self.impl_ = _pood.KNN(None, k=self.k).fit_features(features.detach().float().cpu(), labels.cpu())
        self.fitted_ = True
        return self

    def score_features(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        return self._predict(features).to(features.device)
