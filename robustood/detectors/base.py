"""The detector interface, and penultimate-feature extraction shared by the detectors.

Every detector scores an input with a float, **higher = more OOD** (pytorch-ood's
convention), is configured in its constructor and gets the model and data in its calls::

    det = make_detector("mahalanobis").fit(model, bundle.train)
    scores = det.score(model, x)                    # Tensor[B], its own forward pass
    scores = det.score_features(model.features(x))  # or from a cached forward pass

Detectors come in three kinds, which decide how :func:`~robustood.detectors.run_ood`
schedules them: ``logits`` and ``features`` detectors share one cached forward pass
(:meth:`BaseDetector.score_cached`); ``input`` detectors (ODIN's gradient step, the
reconstruction autoencoder, feature squeezing) run their own passes on the images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import NotFittedError, RobustoodError
from ..inference import check_images, iter_batches

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "BaseDetector",
    "Kind",
    "batches",
    "extract_features",
    "extract_logits",
    "feature_split",
    "features_logits",
    "has_features",
]

Kind = Literal["logits", "features", "input"]


class BaseDetector:
    """The interface of every robustood detector (the pytorch-ood adapter :class:`OODDetector`,
    :class:`~robustood.defenses.FeatureSqueezingDetector`).

    Attributes ``name`` (registry key), ``kind`` and ``requires_fit``; configuration is set in
    ``__init__``, learned state in attributes ending in ``_`` (set by ``fit``, so a detector that
    needs fitting is fitted once it has one, as in scikit-learn). Scores are ``Tensor[B]``,
    float, on the device of the inputs, higher = more OOD.
    """

    name: str = ""
    kind: Kind = "input"
    requires_fit: bool = False

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        """Whether the detector can score (always true for detectors that need no fitting)."""
        return not self.requires_fit or any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def check_fitted(self) -> None:
        """Raise :class:`~robustood.errors.NotFittedError` unless the detector can score."""
        if not self.is_fitted:
            raise NotFittedError(
                f"detector {self.name!r} needs fitting on in-distribution training data before it can score: "
                f"call .fit(model, bundle.train) first (run_ood and `robustood ood` do this for you)"
            )

    def fit(
        self,
        model: nn.Module,
        data: Dataset | DataLoader | Iterable,
        device: torch.device | str = "cpu",
        *,
        batch_size: int = 256,
        progress: bool | None = None,
    ) -> Self:
        """Fit on in-distribution training data (a dataset or a loader of ``(x, y)``); return ``self``."""
        return self

    def fit_features(self, features: torch.Tensor, labels: torch.Tensor, *, model: nn.Module | None = None) -> Self:
        """Fit on cached training features ``N×D`` and labels ``N`` (feature detectors)."""
        raise RobustoodError(f"detector {self.name!r} is not fitted on features; call .fit(model, train_data)")

    # ------------------------------------------------------------------ scoring
    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` from cached logits ``B×K`` (logit detectors)."""
        raise RobustoodError(f"detector {self.name!r} does not score logits")

    def score_features(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[B]`` from cached penultimate features ``B×D`` (feature detectors)."""
        raise RobustoodError(f"detector {self.name!r} does not score features")

    def score_cached(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """Scores ``[B]`` from one shared forward pass: :meth:`score_logits` or :meth:`score_features`."""
        if self.kind == "logits":
            return self.score_logits(logits)
        if self.kind == "features":
            if features is None:
                raise RobustoodError(needs_features(self.name))
            return self.score_features(features, logits)
        raise RobustoodError(f"detector {self.name!r} scores images in its own pass, not cached outputs")

    def score(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` of images ``x`` (``B×C×H×W`` in [0, 1]) with the detector's own forward pass(es)."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")


def needs_features(name: str) -> str:
    """The error message for a feature detector used with a model without penultimate features."""
    return (
        f"detector {name!r} needs the model's penultimate features: use a robustood Classifier "
        f"(with .features(x) and .head), a model loaded through robustood (its features are the input of "
        f"the last linear layer, or the layer named with features= / --feature-layer), or a logit detector "
        f"such as msp, maxlogit, energy or odin"
    )


def feature_split(model: nn.Module | None) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module] | None:
    """``(features_fn, head)`` when ``model(x) == head(features_fn(x))`` (a robustood Classifier, or
    an :class:`~robustood.models.adapt.AdaptedModel` reading the last linear layer's input), else ``None``."""
    features, head = getattr(model, "features", None), getattr(model, "head", None)
    if callable(features) and isinstance(head, nn.Module):
        return features, head
    return None


def has_features(model: nn.Module | None) -> bool:
    """Whether feature detectors can read ``model``'s features (:func:`features_logits`)."""
    return feature_split(model) is not None or callable(getattr(model, "features_logits", None))


def features_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``B×D`` and logits ``B×K`` of ``x`` from one forward pass."""
    both = getattr(model, "features_logits", None)
    if callable(both):
        return both(x)
    split = feature_split(model)
    if split is None:
        raise RobustoodError(needs_features("feature-based"))
    z = split[0](x)
    return z, split[1](z)


def batches(
    data: Dataset | DataLoader | Iterable, batch_size: int = 256
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches of a dataset (CPU, sliced in order) or of a loader as it comes."""
    start = 0
    source = iter_batches(data, batch_size) if isinstance(data, Dataset) else data
    for x, y in source:
        check_images(x, start)
        start += len(x)
        yield x, torch.as_tensor(y)


@torch.no_grad()
def _collect(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: Dataset | DataLoader | Iterable,
    device: torch.device | str,
    batch_size: int,
    progress: bool | None,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    outs, ys = [], []
    for x, y in tqdm(batches(data, batch_size), desc=desc, leave=False, disable=_disable(progress)):
        outs.append(fn(x.to(device)).float())
        ys.append(y)
    if not outs:
        raise RobustoodError("cannot fit a detector on an empty dataset; give it in-distribution training data")
    return torch.cat(outs), torch.cat(ys)


def extract_features(
    model: nn.Module,
    data: Dataset | DataLoader | Iterable,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 256,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features ``N×D`` (float32, on ``device``) and labels ``N`` (CPU) of every input of ``data``."""
    if not has_features(model):
        raise RobustoodError(needs_features("feature-based"))
    model.eval()
    return _collect(lambda x: features_logits(model, x)[0], data, device, batch_size, progress, "features")


def extract_logits(
    model: nn.Module,
    data: Dataset | DataLoader | Iterable,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 256,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``N×K`` (float32, on ``device``) and labels ``N`` (CPU) of every input of ``data``."""
    model.eval()
    return _collect(model, data, device, batch_size, progress, "logits")


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
