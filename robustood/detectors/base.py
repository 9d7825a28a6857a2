"""The detector interface, the registry of detectors by lowercase name, and feature extraction.

Every detector follows pytorch-ood's convention: a score per input, **higher = more OOD**.
A detector is configured in its constructor and gets the model and data in its calls::

    det = make_detector("mahalanobis").fit(model, bundle.train)
    scores = det.score(model, x)            # Tensor[B], its own forward pass
    scores = det.score_features(model.features(x))  # or from a cached forward pass

Detectors come in three kinds, which decide how :func:`~robustood.detectors.run_ood`
schedules them: ``logits`` and ``features`` detectors share one cached forward pass
(:meth:`OODDetector.score_cached`); ``input`` detectors (ODIN's gradient step, the
reconstruction autoencoder) run their own pass on the images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import NotFittedError, RobustoodError
from ..inference import iter_batches

__all__ = [
    "DETECTORS",
    "Kind",
    "OODDetector",
    "batches",
    "extract_features",
    "feature_split",
    "make_detector",
    "parse_detectors",
    "register_detector",
]

Kind = Literal["logits", "features", "input"]


class OODDetector:
    """Base class of robustood's detectors (thin adapters over pytorch-ood).

    Subclasses set ``name`` (registry key), ``kind`` and ``requires_fit``, store their
    keyword-only configuration in ``__init__`` and keep learned state in attributes
    ending in ``_``. Scores are ``Tensor[B]``, float, higher = more OOD.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[Kind] = "logits"
    requires_fit: ClassVar[bool] = False
    #: constructor arguments, shown by ``repr`` and used as table labels
    params: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in self.params)
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        """Whether the detector can score (always true for detectors that need no fitting)."""
        return not self.requires_fit or getattr(self, "fitted_", False)

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
        data: Dataset | DataLoader,
        device: torch.device | str = "cpu",
        *,
        batch_size: int = 256,
        progress: bool | None = None,
    ) -> OODDetector:
        """Fit on in-distribution training data (a dataset or a loader of ``(x, y)``); return ``self``.

        Detectors that need no fitting return ``self`` unchanged.
        """
        if not self.requires_fit:
            return self
        if self.kind == "features":
            z, y = extract_features(model, data, device, batch_size=batch_size, progress=progress)
            return self.fit_features(z, y, model=model)
        raise NotImplementedError(f"{type(self).__name__} must implement fit()")

    def fit_features(self, features: torch.Tensor, labels: torch.Tensor, *, model: nn.Module | None = None):
        """Fit on cached training features ``N×D`` and labels ``N`` (feature detectors)."""
        raise NotImplementedError(f"{type(self).__name__} is not fitted on features")

    # ------------------------------------------------------------------ scoring
    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` from cached logits ``B×K`` (logit detectors)."""
        raise NotImplementedError(f"{type(self).__name__} does not score logits")

    def score_features(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[B]`` from cached penultimate features ``B×D`` (feature detectors)."""
        raise NotImplementedError(f"{type(self).__name__} does not score features")

    def score_cached(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """Scores from one shared forward pass: dispatches to :meth:`score_logits` / :meth:`score_features`."""
        if self.kind == "logits":
            return self.score_logits(logits)
        if self.kind == "features":
            if features is None:
                raise RobustoodError(_needs_features(self.name))
            return self.score_features(features, logits)
        raise RobustoodError(f"detector {self.name!r} scores images in its own pass, not cached outputs")

    @torch.no_grad()
    def score(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` of images ``x`` (``B×C×H×W`` in [0, 1]) with the detector's own forward pass."""
        self.check_fitted()
        if self.kind == "logits":
            return self.score_logits(model(x))
        if self.kind == "features":
            split = feature_split(model)
            if split is None:
                raise RobustoodError(_needs_features(self.name))
            z = split[0](x)
            return self.score_features(z, split[1](z))
        raise NotImplementedError(f"{type(self).__name__} must implement score()")


def _needs_features(name: str) -> str:
    return (
        f"detector {name!r} needs the model's penultimate features: use a robustood Classifier "
        f"(with .features(x) and .head), or a logit detector such as msp, maxlogit, energy or odin"
    )


def feature_split(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module] | None:
    """``(features_fn, head)`` when ``model(x) == head(features_fn(x))`` (a robustood Classifier), else ``None``."""
    features, head = getattr(model, "features", None), getattr(model, "head", None)
    if callable(features) and isinstance(head, nn.Module):
        return features, head
    return None


def batches(
    data: Dataset | DataLoader | Iterable, batch_size: int = 256
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` CPU batches of a dataset (sliced in order) or of a loader as it comes."""
    if isinstance(data, Dataset):
        yield from iter_batches(data, batch_size)
    else:
        for x, y in data:
            yield x, torch.as_tensor(y)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: Dataset | DataLoader,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 256,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features ``N×D`` (on ``device``) and labels ``N`` (CPU) of every input of ``data``."""
    split = feature_split(model)
    if split is None:
        raise RobustoodError(_needs_features("feature-based"))
    model.eval()
    zs, ys = [], []
    for x, y in tqdm(batches(data, batch_size), desc="features", leave=False, disable=_disable(progress)):
        zs.append(split[0](x.to(device)).float())
        ys.append(y)
    if not zs:
        raise RobustoodError("cannot fit a detector on an empty dataset; give it in-distribution training data")
    return torch.cat(zs), torch.cat(ys)


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


# --------------------------------------------------------------------------- registry

DETECTORS: dict[str, type[OODDetector]] = {}


def register_detector(cls: type[OODDetector]) -> type[OODDetector]:
    """Class decorator: add a detector to :data:`DETECTORS` under its lowercase ``name``."""
    DETECTORS[cls.name.lower()] = cls
    return cls


def make_detector(name: str, **kwargs: Any) -> OODDetector:
    """A new detector by registry name (case-insensitive), configured with ``kwargs``."""
    key = str(name).strip().lower()
    if key not in DETECTORS:
        raise RobustoodError(f"unknown detector {name!r}; known detectors: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[key](**kwargs)


def parse_detectors(specs: str | Iterable[str]) -> list[str]:
    """Detector names from a comma list or repeated values: ``"msp,energy"`` → ``["msp", "energy"]``.

    Order kept, duplicates dropped; unknown names raise :class:`RobustoodError` listing the known ones.
    """
    items = [specs] if isinstance(specs, str) else list(specs)
    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            key = part.strip().lower()
            if not key:
                raise RobustoodError(f"empty detector name in {item!r}; known: {', '.join(sorted(DETECTORS))}")
            if key not in DETECTORS:
                raise RobustoodError(
                    f"unknown detector {part.strip()!r}; known detectors: {', '.join(sorted(DETECTORS))}"
                )
            if key not in names:
                names.append(key)
    if not names:
        raise RobustoodError(f"no detector given; known: {', '.join(sorted(DETECTORS))}")
    return names
