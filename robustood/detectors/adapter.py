"""One generic adapter from any pytorch-ood ``Detector`` to robustood's detector interface.

:class:`OODDetector` wraps a registry entry (``OODDetector("energy", t=2.0)``) or a ready
pytorch-ood object (``OODDetector(EnergyBased(None))``). What it scores follows pytorch-ood's
base classes: a ``LogitsDetector`` scores cached logits (``predict_logits``), a
``FeaturesDetector`` is fitted on penultimate features extracted once (``fit_features``) and
scores cached features (``predict_features``), anything else scores images in its own pass
(``fit(loader)``, ``predict(x)``). The classes :class:`MaxSoftmax`, :class:`Energy` … only
name a registry entry: ``MaxSoftmax(t=2.0)`` is ``OODDetector("msp", t=2.0)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import NotFittedError, RobustoodError
from .base import BaseDetector, batches, extract_features, extract_logits, features_logits, has_features, needs_features
from .registry import DETECTORS, DetectorSpec

if TYPE_CHECKING:
    from ._pood import Detector

__all__ = [
    "KNN",
    "ODIN",
    "Energy",
    "FeatureReconstruction",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "OODDetector",
    "Reconstruction",
    "ViM",
    "make_detector",
]


class OODDetector(BaseDetector):
    """A pytorch-ood detector behind robustood's detector interface (see :class:`BaseDetector`).

    Args:
        detector: a registry name (``"msp"``, ``"knn"`` …, see :data:`DETECTORS`) or a
            pytorch-ood ``Detector`` object. A wrapped object scores with the model it was
            built with where it holds one; a feature detector is fed ``model.features(x)``.
        fitted: a wrapped object that requires fitting is fitted already (:func:`fit_detectors` and
            :func:`run_ood` then keep it; :meth:`fit` refits it).
        **params: the registry entry's parameters (e.g. ``t=2.0``, ``k=20``), stored as attributes.

    Attributes:
        name: the registry name, or the wrapped object's lowercased class name.
        kind: ``logits``, ``features`` or ``input``; ``requires_fit``: whether :meth:`fit` is needed.
        reference: the paper that introduced the detector.
        detector_: the pytorch-ood detector that scores (after :meth:`fit`; built on first use
            for detectors that need no fitting).
    """

    def __init__(self, detector: str | Detector, /, *, fitted: bool = False, **params: Any) -> None:
        self.detector = detector
        if isinstance(detector, str):
            key = detector.strip().lower()
            spec = _spec(key)
            if not spec.wrapped:
                raise RobustoodError(f"detector {key!r} is not a pytorch-ood detector; use make_detector({key!r})")
            if fitted:
                raise RobustoodError("fitted=True is for a wrapped pytorch-ood object; fit registry detectors")
            _check_params(key, spec, params)
            values = {**spec.defaults, **params}
            if spec.check is not None:
                spec.check(**values)
            self.spec: DetectorSpec | None = spec
            self.name, self.kind, self.requires_fit = key, spec.kind, spec.requires_fit
            for param, value in values.items():
                setattr(self, param, value)
            return
        from . import _pood

        if not isinstance(detector, _pood.Detector):
            raise RobustoodError(
                f"a detector is a registry name ({', '.join(sorted(DETECTORS))}) or a pytorch-ood Detector, "
                f"got {type(detector).__name__}"
            )
        if params:
            raise RobustoodError(f"a pytorch-ood object comes configured; got parameters {', '.join(params)}")
        self.spec = None
        self.name = type(detector).__name__.lower()
        self.kind = _pood.kind_of(detector)  # type: ignore[assignment]
        self.requires_fit = bool(detector.requires_fit)
        if fitted or not self.requires_fit:
            self.detector_ = detector

    @property
    def needs_data(self) -> bool:
        """Whether fitting reads training data (ASH, SCALE and LTS only need the model's head)."""
        return self.requires_fit and (self.spec is None or self.spec.fit_data)

    @property
    def params(self) -> dict[str, Any]:
        """The configured parameters (``{}`` for a wrapped object)."""
        return {p: getattr(self, p) for p in self.spec.defaults} if self.spec is not None else {}

    @property
    def reference(self) -> str:
        """The paper that introduced the detector."""
        if self.spec is not None:
            return self.spec.reference
        from . import _pood

        return _pood.reference_of(self.detector)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        if self.spec is None:
            get = getattr(self.detector, "get_hyperparameters", dict)
            args = ", ".join(f"{k}={v!r}" for k, v in get().items())
            return f"{type(self.detector).__name__}({args})"
        shown = self.spec.shown if self.spec.shown is not None else tuple(self.spec.defaults)
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in shown)
        return f"{self.spec.label or self.name}({args})"

    # ------------------------------------------------------------------ the pytorch-ood object
    def _fresh(self, model: nn.Module | None) -> Detector:
        """A new pytorch-ood detector for ``model`` (a wrapped object: itself, to be fitted in place)."""
        if self.spec is None:
            return self.detector  # type: ignore[return-value]
        return self.spec.build(model, **self.params)

    def _scorer(self, model: nn.Module | None = None) -> Detector:
        """The pytorch-ood detector that scores: the fitted one, else one built (once, or per
        call with ``model`` for input detectors that need no fitting, e.g. ODIN)."""
        self.check_fitted()
        if hasattr(self, "detector_"):
            return self.detector_
        detector = self._fresh(model)
        if self.kind != "input":
            self.detector_ = detector
        return detector

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        model: nn.Module,
        data: Dataset | DataLoader | Iterable,
        device: torch.device | str = "cpu",
        *,
        batch_size: int = 256,
        progress: bool | None = None,
    ) -> OODDetector:
        """Fit on in-distribution training data (a dataset or a loader of ``(x, y)``); return ``self``.

        Feature detectors are fitted on ``model.features`` of ``data`` (computed on ``device``),
        logit detectors on its logits; input detectors get ``data`` as batches on ``device``.
        Detectors that need no fitting return ``self`` unchanged.
        """
        if not self.requires_fit:
            return self
        if not self.needs_data:
            self.detector_ = self._fresh(model)
            return self
        if self.kind == "features":
            z, y = extract_features(model, data, device, batch_size=batch_size, progress=progress)
            return self.fit_features(z, y, model=model)
        if self.kind == "logits":
            logits, y = extract_logits(model, data, device, batch_size=batch_size, progress=progress)
            detector = self._fresh(model)
            self.detector_ = detector.fit_logits(logits, _id_labels(y, self.name))  # type: ignore[attr-defined]
            return self
        detector = self._fresh(model).to(device)
        if hasattr(detector, "progress"):
            detector.progress = progress
        loader: Iterable = data
        if isinstance(data, Dataset):
            if self.spec is not None and self.spec.loader is not None:
                loader = self.spec.loader(data, batch_size, **self.params)
            else:
                loader = _Batches(data, batch_size)
        self.detector_ = detector.fit(loader)
        return self

    def fit_features(
        self, features: torch.Tensor, labels: torch.Tensor, *, model: nn.Module | None = None
    ) -> OODDetector:
        """Fit on cached training features ``N×D`` and labels ``N`` (feature detectors); ``model``
        gives detectors that need it their part of the classifier (ViM: ``model.head``)."""
        if self.kind != "features":
            return super().fit_features(features, labels, model=model)
        labels = _id_labels(labels, self.name)
        detector = self._fresh(model)
        z = features.detach().float()
        try:
            if _on_maps(detector):  # penultimate features as 1×1 feature maps (ASH, ReAct, SCALE, VRA)
                self.detector_ = detector.fit_feature_maps(z[:, :, None, None], labels)  # type: ignore[attr-defined]
            else:
                self.detector_ = detector.fit_features(z, labels)  # type: ignore[attr-defined]
        except (AssertionError, ValueError) as err:
            if isinstance(err, RobustoodError):
                raise
            detail = f": {err}" if str(err) else ""
            raise RobustoodError(
                f"cannot fit {self.name} on these features{detail}; fit it on in-distribution training data "
                f"with samples of every class 0…K−1"
            ) from None
        return self

    # ------------------------------------------------------------------ scoring
    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` from cached logits ``B×K`` (pytorch-ood's ``predict_logits``)."""
        if self.kind != "logits":
            return super().score_logits(logits)
        with _fitting_errors(self.name):
            return self._scorer().predict_logits(logits)  # type: ignore[attr-defined]

    def score_features(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[B]`` (float32, on the features' device) from cached features ``B×D`` (``predict_features``)."""
        if self.kind != "features":
            return super().score_features(features, logits)
        with _fitting_errors(self.name):
            scorer = self._scorer()
            if _on_maps(scorer):
                scores = scorer.predict_feature_maps(features[:, :, None, None])  # type: ignore[attr-defined]
            else:
                scores = scorer.predict_features(features)  # type: ignore[attr-defined]
        return scores.float().to(features.device)

    def score(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` of images ``x`` (``B×C×H×W`` in [0, 1]) with the detector's own forward pass."""
        self.check_fitted()
        if self.kind == "logits":
            with torch.no_grad():
                return self.score_logits(model(x))
        if self.kind == "features":
            if not has_features(model):
                raise RobustoodError(needs_features(self.name))
            with torch.no_grad():
                z, logits = features_logits(model, x)
                return self.score_features(z, logits)
        with _fitting_errors(self.name):
            return self._scorer(model).predict(x).detach()


@contextmanager
def _fitting_errors(name: str) -> Iterator[None]:
    """Turn pytorch-ood's ``RequiresFittingException`` into :class:`NotFittedError`."""
    from . import _pood

    try:
        yield
    except _pood.RequiresFittingException:
        raise NotFittedError(f"detector {name!r} is not fitted; call .fit(model, train_data)") from None


def _on_maps(detector: Any) -> bool:
    """Whether a feature detector works on feature maps ``B×C×H×W`` (pytorch-ood's ``FeatureMapsDetector``)."""
    return hasattr(detector, "predict_feature_maps") and not hasattr(detector, "predict_features")


class _Batches:
    """A re-iterable of ordered ``(x, y)`` batches of a dataset, for pytorch-ood's ``fit(loader)``."""

    def __init__(self, data: Dataset, batch_size: int) -> None:
        self.data, self.batch_size = data, batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batches(self.data, self.batch_size)


def _id_labels(labels: torch.Tensor, name: str) -> torch.Tensor:
    labels = torch.as_tensor(labels).long()
    if labels.numel() == 0 or (labels < 0).any():
        raise RobustoodError(f"fit {name} on in-distribution training data (class labels 0…K−1), not OOD data")
    return labels


def _spec(key: str) -> DetectorSpec:
    if key not in DETECTORS:
        raise RobustoodError(f"unknown detector {key!r}; known detectors: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[key]


def _check_params(key: str, spec: DetectorSpec, params: dict[str, Any]) -> None:
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        known = ", ".join(spec.defaults) or "none"
        raise RobustoodError(f"detector {key!r} has no parameter {', '.join(unknown)}; its parameters: {known}")


def make_detector(detector: str | BaseDetector | Detector, **kwargs: Any) -> BaseDetector:
    """A detector: a registry name (case-insensitive) configured with ``kwargs``, a pytorch-ood
    ``Detector`` object wrapped in :class:`OODDetector`, or a robustood detector as is."""
    if isinstance(detector, BaseDetector):
        if kwargs:
            raise RobustoodError(f"{detector!r} is configured already; got parameters {', '.join(kwargs)}")
        return detector
    if isinstance(detector, str):
        key = detector.strip().lower()
        spec = _spec(key)
        if not spec.wrapped:
            _check_params(key, spec, kwargs)
            return spec.build(None, **kwargs)
        return OODDetector(key, **kwargs)
    return OODDetector(detector, **kwargs)


# --------------------------------------------------------------------------- registry entries as classes


class _Named(OODDetector):
    """An :class:`OODDetector` of one registry entry (``key``)."""

    key: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        super().__init__(self.key, **params)


class MaxSoftmax(_Named):
    """Negative maximum softmax probability, ``−max_k softmax(f(x)/t)_k`` in [−1, −1/K] (``msp``).

    >>> MaxSoftmax().score_logits(torch.tensor([[0.0, 0.0]]))
    tensor([-0.5000])
    """

    key = "msp"


class MaxLogit(_Named):
    """Negative maximum logit, ``−max_k f_k(x)`` (``maxlogit``)."""

    key = "maxlogit"


class Energy(_Named):
    """Energy, ``−t·logsumexp(f(x)/t)`` (``energy``)."""

    key = "energy"


class ODIN(_Named):
    """``−max_k softmax(f(x̂)/T)_k`` with ``x̂ = x − eps·sign(∇ₓ CE(f(x)/T, ŷ))`` (``odin``).

    Inputs are images in [0, 1] and robustood models normalise inside themselves, so ``eps``
    is in pixel units (the default 0.0014 ≈ 0.36/255). One forward-backward and one forward
    pass per batch, so it never shares the cached forward pass.
    """

    key = "odin"


class Mahalanobis(_Named):
    """Half the squared Mahalanobis distance of the features to the closest class mean (shared
    covariance), without input preprocessing or layer ensembles (``mahalanobis``). Every class
    must occur in the fitting data."""

    key = "mahalanobis"


class ViM(_Named):
    """Virtual-logit Matching: energy minus a virtual logit, the feature norm outside the
    ``d``-dimensional principal subspace of the ID features (``vim``). Needs ``model.head``
    (an ``nn.Linear``); ``d`` is capped at half the feature size."""

    key = "vim"


class KNN(_Named):
    """Distance to the ``k``-th nearest ID training feature, features scaled to unit length
    (``knn``); searched with scikit-learn on the CPU."""

    key = "knn"


class Reconstruction(_Named):
    """Mean squared error of an autoencoder trained on the ID images (``reconstruction``;
    ``source="features"``: a decoder from the frozen classifier's features). Trains in
    :meth:`fit`; images must have the fitted shape."""

    key = "reconstruction"


class FeatureReconstruction(_Named):
    """:class:`Reconstruction` from the frozen classifier's penultimate features (``feature_reconstruction``)."""

    key = "feature_reconstruction"
