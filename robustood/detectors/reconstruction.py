"""Reconstruction-error OOD detection: inputs unlike the training data reconstruct badly.

pytorch-ood has no reconstruction detector, so :class:`ReconstructionDetector` is written
as a pytorch-ood ``Detector`` (``fit(loader) -> self``, ``predict(x) -> Tensor[B]``) and
composes with its tools like its own detectors; robustood's registry entries
``reconstruction`` and ``feature_reconstruction`` wrap it in the generic adapter. Two forms,
as in the course labs:

* ``source="image"``: a :class:`~robustood.models.ConvAutoencoder` trained on the ID
  training images, score = mean squared error of its reconstruction;
* ``source="features"``: a convolutional decoder trained to rebuild the image from the
  *frozen* classifier's penultimate features (``model.features(x)``), score = its error.

Scores are per-image means over ``C×H×W`` of squared differences of [0, 1] pixels, so they
lie in [0, 1]; higher = more OOD.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import trange

from ..errors import RobustoodError
from ..inference import iter_batches
from ..models import ConvAutoencoder
from . import _pood

__all__ = ["FeatureDecoder", "ReconstructionDetector", "Shuffled"]


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
            ``None``, else a decoder (features → images). ``None``: built in :meth:`fit` for the
            shape of the first training batch (a :class:`~robustood.models.ConvAutoencoder`, or a
            :class:`FeatureDecoder` of ``encoder``'s features), initialised with ``seed``.
        encoder: optional frozen feature extractor (e.g. ``classifier.features``); it is
            never trained here.
        epochs: passes of Adam training of ``network`` on the MSE loss in :meth:`fit`.
        lr: the Adam learning rate.
        width: channel width of a network built in :meth:`fit`.
        seed: seed of the initial weights of a network built in :meth:`fit`.
        progress: show a progress bar over the epochs (``None``: only on a terminal).

    ``fit(loader)`` takes any re-iterable of ``(x, y)`` batches of ID images and trains on the
    detector's device (see ``to(device)``; CPU by default); ``predict(x)`` returns ``Tensor[B]``
    in [0, 1]. Raises pytorch-ood's ``RequiresFittingException`` before ``fit``.
    """

    requires_fit = True

    def __init__(
        self,
        network: nn.Module | None = None,
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        epochs: int = 20,
        lr: float = 1e-3,
        width: int = 32,
        seed: int = 0,
        progress: bool | None = False,
    ) -> None:
        super().__init__()
        self.network = network
        self.encoder = encoder
        self.epochs = epochs
        self.lr = lr
        self.width = width
        self.seed = seed
        self.progress = progress
        self.input_shape: tuple[int, ...] | None = None
        self.fitted = False

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            return self.network(x)  # type: ignore[misc]
        with torch.no_grad():
            z = self.encoder(x)
        return self.network(z)  # type: ignore[misc]

    def _build(self, x0: torch.Tensor) -> nn.Module:
        """A network for images shaped like ``x0`` (``1×C×H×W``), seeded with ``seed``."""
        shape = tuple(int(s) for s in x0.shape[1:])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.encoder is None:
                return ConvAutoencoder(shape[0], width=self.width)
            with torch.no_grad():
                dim = self.encoder(x0).flatten(1).shape[1]
            return FeatureDecoder(dim, shape, width=self.width)  # type: ignore[arg-type]

    def fit(self, data_loader: Iterable) -> ReconstructionDetector:
        device = self.device or torch.device("cpu")
        if self.network is None:
            x0 = next(iter(data_loader))[0][:1].to(device)
            self.input_shape = tuple(int(s) for s in x0.shape[1:])
            self.network = self._build(x0).to(device)
        opt = torch.optim.Adam(self.network.parameters(), lr=self.lr)
        self.network.train()
        disable = None if self.progress is None else not self.progress
        for _ in trange(self.epochs, desc="reconstruction", leave=False, disable=disable):
            for x, _y in data_loader:
                x = x.to(device)
                if self.input_shape is None:
                    self.input_shape = tuple(int(s) for s in x.shape[1:])
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
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise RobustoodError(
                f"reconstruction was fitted on images of shape {self.input_shape}, got {tuple(x.shape[1:])}; "
                f"convert them with robustood.data.conform_images"
            )
        device = self.device
        if device is not None:
            x = x.to(device)
        self.network.eval()  # type: ignore[union-attr]
        return (self._reconstruct(x) - x).pow(2).flatten(1).mean(1)


class Shuffled:
    """A re-iterable of shuffled ``(x, y)`` batches of a dataset (a new order each pass, seeded)."""

    def __init__(self, data: Dataset, batch_size: int, seed: int) -> None:
        self.data, self.batch_size = data, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter_batches(self.data, self.batch_size, shuffle=True, generator=self.generator)
