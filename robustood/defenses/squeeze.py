"""Feature squeezing: flag inputs whose prediction moves when the input is simplified.

Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural
Networks", NDSS 2018. Each squeezer maps a batch ``B×C×H×W`` in [0, 1] to a simpler
batch of the same shape, in plain torch on the input's device: bit-depth reduction and the
median filter give exactly the outputs of ART's preprocessors ``FeatureSqueezing`` and
``SpatialSmoothing`` (the tests check it), down-then-up resampling has no ART counterpart.
The detector's score is the largest L1 distance between the softmax of the original input
and of each squeezed version, in [0, 2]; higher = more likely adversarial (pytorch-ood's
convention). It is a robustood detector (kind ``input``, registry name ``squeeze``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..detectors.base import BaseDetector, batches
from ..errors import NotFittedError, RobustoodError
from ..utils import select_device

__all__ = ["BitDepth", "FeatureSqueezingDetector", "MedianFilter", "Resample", "Squeezer"]


@dataclass(frozen=True)
class BitDepth:
    """Round every pixel in [0, 1] to the nearest of ``2**bits`` levels (ties to even, as ``np.rint``).

    Equal to ART's ``FeatureSqueezing(clip_values=(0, 1), bit_depth=bits)``: the product is
    rounded in float64 as ART does (in float32, ``x·(2**bits − 1)`` can round onto a tie and
    flip a level), then cast back to the input's dtype.
    """

    bits: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise RobustoodError(f"bit depth must be an integer from 1 to 8, got {self.bits!r}")

    @property
    def name(self) -> str:
        return f"bit:{self.bits}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        exact = x.double() if x.device.type != "mps" else x.cpu().double()  # MPS has no float64
        return (torch.round(exact * levels) / levels).to(x.device, x.dtype)


@dataclass(frozen=True)
class MedianFilter:
    """A ``window×window`` median filter per channel, equal to ART's ``SpatialSmoothing``.

    ART calls ``scipy.ndimage.median_filter(size=(1, 1, w, w), mode="reflect")``, so: the
    window at a pixel covers offsets ``−(w // 2) … (w − 1) // 2`` (for even ``w`` one more
    pixel above and left); the image is extended by half-sample symmetric reflection
    (``c b a | a b c | c b a``, the edge pixel repeated: scipy's ``reflect``, which is not
    torch's ``F.pad(mode="reflect")``, scipy's ``mirror``), repeatedly where the window is
    larger than the image; and an even count takes the *upper* median, element
    ``w·w // 2`` of the sorted window (``torch.median`` would take the lower one).
    """

    window: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or not 1 <= self.window <= 32:
            raise RobustoodError(f"median window must be an integer from 1 to 32 pixels, got {self.window!r}")

    @property
    def name(self) -> str:
        return f"median:{self.window}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w = self.window
        before, after = w // 2, (w - 1) // 2
        rows = _symmetric_index(x.shape[-2], before, after, x.device)
        cols = _symmetric_index(x.shape[-1], before, after, x.device)
        padded = x[..., rows, :][..., cols]  # B×C×(H+w−1)×(W+w−1)
        windows = padded.unfold(-2, w, 1).unfold(-2, w, 1).reshape(*x.shape, w * w)  # B×C×H×W×w²
        return windows.sort(dim=-1).values[..., (w * w) // 2].clamp(0, 1)


def _symmetric_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices ``−before … n − 1 + after`` folded into ``0 … n − 1`` by half-sample symmetric reflection."""
    i = torch.arange(-before, n + after, device=device).remainder(2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


@dataclass(frozen=True)
class Resample:
    """Shrink by ``scale`` (bilinear, antialiased), then enlarge back to the input size."""

    scale: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.scale < 1:
            raise RobustoodError(f"resample scale must be in (0, 1), e.g. 0.5, got {self.scale!r}")

    @property
    def name(self) -> str:
        return f"resample:{self.scale:g}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        small = F.interpolate(
            x, size=(max(1, round(h * self.scale)), max(1, round(w * self.scale))), mode="bilinear", antialias=True
        )
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


Squeezer = BitDepth | MedianFilter | Resample


class FeatureSqueezingDetector(BaseDetector):
    """Feature-squeezing detector (Xu et al., NDSS 2018), a robustood detector of kind ``input``.

    Args:
        bit_depth: bits per pixel of the bit-depth squeezer, 1–8 (``None``: not used).
        median_window: window of the median-filter squeezer in pixels (``None``: not used).
        resample: scale of the down-then-up squeezer in (0, 1) (``None``: not used).
        threshold: fixed score threshold in [0, 2] (the labs use 1.0); ``None`` calibrates it.
        fpr: target false-positive rate in (0, 1) on the clean data given to :meth:`fit`
            (used when ``threshold`` is ``None``).
        batch_size: batch size of :meth:`fit`.
        device: where :meth:`fit` runs (overrides the device of the batches it is given).

    After :meth:`fit`: ``model_``, ``threshold_``, ``fpr_`` (the false-positive rate the
    threshold gives on the fitting data), ``calibration_scores_`` (``Tensor[N]``, CPU) and
    ``device_`` (where it was fitted). Scores and predictions are on the inputs' device.

    Example:
        >>> det = FeatureSqueezingDetector(bit_depth=4, fpr=0.05).fit(model, bundle.val)
        >>> scores = det.predict(x)  # Tensor[B] in [0, 2], higher = more likely adversarial
        >>> flags = det.flag(x)  # Tensor[B] of bool, True = flagged as adversarial
    """

    name = "squeeze"
    kind = "input"
    requires_fit = True

    def __init__(
        self,
        *,
        bit_depth: int | None = 4,
        median_window: int | None = 2,
        resample: float | None = None,
        threshold: float | None = None,
        fpr: float = 0.05,
        batch_size: int = 256,
        device: torch.device | str | None = None,
    ) -> None:
        self.bit_depth = bit_depth
        self.median_window = median_window
        self.resample = resample
        self.threshold = threshold
        self.fpr = fpr
        self.batch_size = batch_size
        self.device = device
        self.squeezers: tuple[Squeezer, ...] = self._squeezers()  # validates the squeezer settings
        if threshold is not None and not 0 <= float(threshold) <= 2:
            raise RobustoodError(
                f"threshold must be in [0, 2] (an L1 distance of two softmax vectors), got {threshold}"
            )
        if not 0 < float(fpr) < 1:
            raise RobustoodError(f"fpr must be in (0, 1), e.g. 0.05 for 5 %, got {fpr}")

    def _squeezers(self) -> tuple[Squeezer, ...]:
        out: list[Squeezer] = []
        if self.bit_depth is not None:
            out.append(BitDepth(self.bit_depth))
        if self.median_window is not None:
            out.append(MedianFilter(self.median_window))
        if self.resample is not None:
            out.append(Resample(float(self.resample)))
        if not out:
            raise RobustoodError(
                "feature squeezing needs at least one squeezer: set bit_depth, median_window or resample"
            )
        return tuple(out)

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.squeezers)
        how = f"threshold={self.threshold}" if self.threshold is not None else f"fpr={self.fpr}"
        return f"FeatureSqueezingDetector({names}; {how})"

    # ------------------------------------------------------------------ fitting
    def check_fitted(self) -> None:
        """Raise :class:`~robustood.errors.NotFittedError` before :meth:`fit`."""
        if not self.is_fitted:
            raise NotFittedError("this FeatureSqueezingDetector is not fitted yet; call fit(model, clean_data) first")

    def fit(
        self,
        model: nn.Module,
        data: Dataset | DataLoader | Iterable,
        device: torch.device | str | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> FeatureSqueezingDetector:
        """Keep ``model`` and set the threshold from clean held-out ``data`` (e.g. ``bundle.val``).

        ``device``: where to score (default: the constructor's ``device``, else the batches'
        own device, CPU for a dataset). With a fixed ``threshold`` the data only measures the
        false-positive rate ``fpr_``. Under ``torchrun`` a dataset is scored in shards of whole
        batches and the scores pooled, so every rank sets the same threshold.
        """
        from ..distributed import all_gather_cat, shard_batches, world

        model.eval()
        target = device if device is not None else self.device
        dev = select_device(target) if target is not None else None
        size = batch_size or self.batch_size
        w = world()
        if w.distributed and isinstance(data, Dataset):
            data = Subset(data, shard_batches(len(data), size, w))  # type: ignore[arg-type]
            progress = progress if w.is_main else False
        scores, seen = [], torch.device("cpu")
        for x, _ in tqdm(batches(data, size), desc="squeeze: fit", leave=False, disable=_off(progress)):
            x = x.to(dev) if dev is not None else x
            seen = x.device
            with torch.no_grad():
                logits = model(x)
            scores.append(self.squeeze_outputs(model, x, logits)[0].cpu())
        calibration = all_gather_cat(torch.cat(scores) if scores else torch.empty(0))
        if not len(calibration):
            raise RobustoodError("feature squeezing needs clean images to fit on; the dataset is empty")
        if self.threshold is not None:
            threshold = float(self.threshold)
        else:
            # the smallest threshold that flags at most ``fpr`` of the clean scores (flag: score > threshold)
            threshold = float(torch.quantile(calibration.double(), 1 - float(self.fpr), interpolation="higher"))
        self.model_ = model
        self.device_ = dev if dev is not None else seen
        self.threshold_ = threshold
        self.calibration_scores_ = calibration
        self.fpr_ = int((calibration > threshold).sum()) / len(calibration)
        return self

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def squeeze_outputs(
        self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``[B]`` and the predicted class ``[B]`` of the squeezed input (see :meth:`squeeze`)
        from ``logits`` of ``x`` (``B×K``) the caller has computed: one forward pass per squeezer.

        Needs no fitting (``model`` is the classifier to score with).
        """
        p = F.softmax(logits.float(), dim=1)
        distances, squeezed_pred = [], None
        for squeezer in self.squeezers:
            out = model(squeezer(x))
            if squeezed_pred is None:
                squeezed_pred = out.argmax(1)
            distances.append((p - F.softmax(out.float(), dim=1)).abs().sum(1))
        return torch.stack(distances).amax(0), squeezed_pred  # type: ignore[return-value]

    def score(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B]`` in [0, 2]: the largest L1 softmax distance of ``x`` to any squeezed version of it."""
        self.check_fitted()
        with torch.no_grad():
            logits = model(x)
        return self.squeeze_outputs(model, x, logits)[0]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``Tensor[B]`` in [0, 2] of ``x`` with the fitted model (pytorch-ood's ``predict``)."""
        self.check_fitted()
        return self.score(self.model_, x)

    def flag(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B]`` of bool: ``True`` where the score exceeds ``threshold_`` (flagged as adversarial)."""
        return self.predict(x) > self.threshold_

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` after the first squeezer (bit depth by default): what the defended classifier sees."""
        return self.squeezers[0](x)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class ``Tensor[B]`` of the squeezed input (see :meth:`squeeze`), with the fitted model."""
        self.check_fitted()
        return self.model_(self.squeeze(x)).argmax(1)


def _off(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
