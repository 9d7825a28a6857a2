"""Reconstruction-error OOD detection: inputs unlike the training data reconstruct badly.

pytorch-ood has no reconstruction detector, so :class:`ReconstructionDetector` is written
as a pytorch-ood ``Detector`` (``fit(loader) -> self``, ``predict(x) -> Tensor[B]``) and
composes with its tools like its own detectors. Two forms, as in the course labs:

* ``source="image"``: a :class:`~robustood.models.ConvAutoencoder` trained on the ID
  training images, score = mean squared error of its reconstruction;
* ``source="features"``: a convolutional decoder trained to rebuild the image from the
  *frozen* classifier's penultimate features (``model.features(x)``), score = its error.

Scores are per-image means over ``C×H×W`` of squared differences of [0, 1] pixels, so they
lie in [0, 1]; higher = more OOD.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import trange

from ..errors import NotFittedError, RobustoodError
from ..inference import iter_batches
from ..models import ConvAutoencoder
from . import _pood
from .base import OODDetector, feature_split, register_detector

__all__ = ["FeatureDecoder", "FeatureReconstruction", "Reconstruction", "ReconstructionDetector"]


class FeatureDecoder(nn.Module):
    """Decode a feature vector ``B×D`` to an image ``B×C×H×W`` in [0, 1]: one dense layer to a
    ``⌈H/4⌉×⌈W/4⌉`` grid, then two stride-2 transposed convolutions (resampled to ``H×W``)."""

    def __init__(self, feature_dim: int, shape: tuple[int, int, int], width: int = 32) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        self.grid = (2 * width, math.ceil(h / 4), math.ceil(w / 4))
        self.dense = nn.Sequential(nn.Linear(feature_dim, math.prod(self.grid)), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(width, c, 4, 2, 1)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.up(self.dense(z.flatten(1)).view(-1, *self.grid))
        if tuple(out.shape[-2:]) != self.shape[1:]:
            out = F.interpolate(out, size=self.shape[1:], mode="bilinear", align_corners=False)
        return torch.sigmoid(out)


class ReconstructionDetector(_pood.Detector):
    """Mean squared reconstruction error, as a pytorch-ood ``Detector``.

    Args:
        network: the trainable part: an autoencoder (images → images) when ``encoder`` is
            ``None``, else a decoder (features → images).
        encoder: optional frozen feature extractor (e.g. ``classifier.features``); it is
            never trained here.
        epochs: passes of Adam training of ``network`` on the MSE loss in :meth:`fit`.
        lr: the Adam learning rate.

    ``fit(loader)`` takes any re-iterable of ``(x, y)`` batches of ID images; ``predict(x)``
    returns ``Tensor[B]`` in [0, 1]. Raises pytorch-ood's ``RequiresFittingException`` before ``fit``.
    """

    requires_fit = True

    def __init__(
        self,
        network: nn.Module,
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        epochs: int = 20,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.network = network
        self.encoder = encoder
        self.epochs = epochs
        self.lr = lr
        self.fitted = False
        self.progress: bool | None = False

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            return self.network(x)
        with torch.no_grad():
            z = self.encoder(x)
        return self.network(z)

    def fit(self, data_loader) -> ReconstructionDetector:
        device = self.device or torch.device("cpu")
        opt = torch.optim.Adam(self.network.parameters(), lr=self.lr)
        self.network.train()
        disable = None if self.progress is None else not self.progress
        for _ in trange(self.epochs, desc="reconstruction", leave=False, disable=disable):
            for x, _y in data_loader:
                x = x.to(device)
                loss = F.mse_loss(self._reconstruct(x), x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.network.eval()
        self.fitted = True
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise _pood.RequiresFittingException()
        device = self.device
        if device is not None:
            x = x.to(device)
        self.network.eval()
        return (self._reconstruct(x) - x).pow(2).flatten(1).mean(1)


class _Shuffled:
    """A re-iterable of shuffled ``(x, y)`` batches (a new order each epoch, seeded)."""

    def __init__(self, data: Dataset, batch_size: int, seed: int) -> None:
        self.data, self.batch_size = data, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter_batches(self.data, self.batch_size, shuffle=True, generator=self.generator)


@register_detector
class Reconstruction(OODDetector):
    """Robustood adapter of :class:`ReconstructionDetector` (registry ``reconstruction``:
    full autoencoder; ``feature_reconstruction``: decoder on the frozen classifier's features).

    Trains in :meth:`fit` on the ID training images (seconds on digits, minutes on CIFAR-10
    on a GPU); scores images in its own pass. Images must be in the model's input shape.
    """

    name = "reconstruction"
    kind = "input"
    requires_fit = True
    params = ("source", "epochs", "lr", "train_batch_size", "seed")

    def __init__(
        self,
        *,
        source: Literal["image", "features"] = "image",
        epochs: int = 20,
        lr: float = 1e-3,
        train_batch_size: int = 64,
        width: int = 32,
        seed: int = 0,
    ) -> None:
        if source not in ("image", "features"):
            raise RobustoodError(f"reconstruction source must be 'image' or 'features', got {source!r}")
        if epochs < 1 or train_batch_size < 1 or not lr > 0:
            raise RobustoodError("reconstruction needs epochs ≥ 1, train_batch_size ≥ 1 and lr > 0")
        self.source = source
        self.epochs = epochs
        self.lr = lr
        self.train_batch_size = train_batch_size
        self.width = width
        self.seed = seed

    def fit(
        self,
        model: nn.Module,
        data: Dataset | DataLoader,
        device: torch.device | str = "cpu",
        *,
        batch_size: int = 256,
        progress: bool | None = None,
    ) -> Reconstruction:
        loader = _Shuffled(data, self.train_batch_size, self.seed) if isinstance(data, Dataset) else data
        x0 = next(iter(loader))[0][:1].to(device)
        shape = tuple(int(s) for s in x0.shape[1:])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.source == "image":
                network: nn.Module = ConvAutoencoder(shape[0], width=self.width)
                encoder = None
            else:
                split = feature_split(model)
                if split is None:
                    raise RobustoodError(
                        "feature reconstruction needs a model with .features(x) (a robustood Classifier); "
                        "use the image autoencoder (reconstruction) instead"
                    )
                encoder = split[0]
                model.eval()
                with torch.no_grad():
                    dim = encoder(x0).flatten(1).shape[1]
                network = FeatureDecoder(dim, shape, width=self.width)  # type: ignore[arg-type]
        impl = ReconstructionDetector(network.to(device), encoder, epochs=self.epochs, lr=self.lr)
        impl.progress = progress
        self.impl_ = impl.fit(loader)
        self.input_shape_ = shape
        self.fitted_ = True
        return self

    def score(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        self.check_fitted()
        if tuple(x.shape[1:]) != self.input_shape_:
            raise RobustoodError(
                f"reconstruction was fitted on images of shape {self.input_shape_}, got {tuple(x.shape[1:])}; "
                f"convert them with robustood.data.conform_images"
            )
        try:
            return self.impl_.predict(x)
        except _pood.RequiresFittingException:  # pragma: no cover - guarded by check_fitted
            raise NotFittedError("reconstruction detector is not fitted; call .fit(model, train_data)") from None


@register_detector
class FeatureReconstruction(Reconstruction):
    """:class:`Reconstruction` with ``source="features"``: a decoder from the frozen classifier's
    penultimate features back to the image."""

    name = "feature_reconstruction"

    def __init__(self, *, source: Literal["image", "features"] = "features", **kwargs) -> None:
        super().__init__(source=source, **kwargs)
