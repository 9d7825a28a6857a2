"""Feature squeezing: flag inputs whose prediction moves when the input is simplified.

Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural
Networks", NDSS 2018. Each squeezer maps a batch ``B×C×H×W`` in [0, 1] to a simpler
batch of the same shape: bit-depth reduction and the median filter run on ART's
preprocessors (``FeatureSqueezing``, ``SpatialSmoothing``), down-then-up resampling on
plain torch. The detector's score is the largest L1 distance between the softmax of
the original input and of each squeezed version, in [0, 2]; higher = more likely
adversarial (pytorch-ood's convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..errors import NotFittedError, RobustoodError
from ..inference import iter_batches
from ..utils import format_eps, select_device
from . import _art
from ._eval import AttackSpec, adversarial_batches

__all__ = ["BitDepth", "FeatureSqueezingDetector", "MedianFilter", "Resample", "Squeezer", "squeezing_rows"]


@dataclass(frozen=True)
class BitDepth:
    """Reduce every pixel to ``bits`` bits (``2**bits`` levels); ART's ``FeatureSqueezing``."""

    bits: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise RobustoodError(f"bit depth must be an integer from 1 to 8, got {self.bits!r}")

    @property
    def name(self) -> str:
        return f"bit:{self.bits}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _art.reduce_bit_depth(x, self.bits)


@dataclass(frozen=True)
class MedianFilter:
    """A ``window×window`` median filter per channel; ART's ``SpatialSmoothing``."""

    window: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or not 1 <= self.window <= 32:
            raise RobustoodError(f"median window must be an integer from 1 to 32 pixels, got {self.window!r}")

    @property
    def name(self) -> str:
        return f"median:{self.window}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _art.median_filter(x, self.window)


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


class FeatureSqueezingDetector:
    """Feature-squeezing detector (Xu et al., NDSS 2018), scikit-learn style.

    Args:
        bit_depth: bits per pixel of the bit-depth squeezer, 1–8 (``None``: not used).
        median_window: window of the median-filter squeezer in pixels (``None``: not used).
        resample: scale of the down-then-up squeezer in (0, 1) (``None``: not used).
        threshold: fixed score threshold in [0, 2] (the labs use 1.0); ``None`` calibrates it.
        fpr: target false-positive rate in (0, 1) on the clean data given to :meth:`fit`
            (used when ``threshold`` is ``None``).

    After :meth:`fit`: ``model_``, ``threshold_``, ``fpr_`` (the false-positive rate the
    threshold gives on the fitting data) and ``calibration_scores_`` (``Tensor[N]``).

    Example:
        >>> det = FeatureSqueezingDetector(bit_depth=4, fpr=0.05).fit(model, bundle.val)
        >>> flags = det.predict(x)  # Tensor[B] of bool, True = flagged as adversarial
    """

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
    def fit(self, model: nn.Module, dataset: Dataset) -> FeatureSqueezingDetector:
        """Keep ``model`` and set the threshold from clean held-out ``dataset`` (e.g. ``bundle.val``).

        With a fixed ``threshold`` the data only measures the false-positive rate ``fpr_``.
        """
        self.model_ = model.eval()
        self.device_ = select_device(self.device) if self.device is not None else _model_device(model)
        scores = torch.cat([self._scores(x.to(self.device_)).cpu() for x, _ in iter_batches(dataset, self.batch_size)])
        if len(scores) == 0:
            raise RobustoodError("feature squeezing needs clean images to fit on; the dataset is empty")
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        else:
            # the smallest threshold that flags at most ``fpr`` of the clean scores (flag: score > threshold)
            self.threshold_ = float(torch.quantile(scores.double(), 1 - float(self.fpr), interpolation="higher"))
        self.calibration_scores_ = scores
        self.fpr_ = float((scores > self.threshold_).float().mean())
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("this FeatureSqueezingDetector is not fitted yet; call fit(model, clean_data) first")

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        p = F.softmax(self.model_(x).float(), dim=1)
        dist = [(p - F.softmax(self.model_(s(x)).float(), dim=1)).abs().sum(1) for s in self.squeezers]
        return torch.stack(dist).amax(0)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B]`` in [0, 2]: the largest L1 softmax distance to any squeezed version of ``x``."""
        self._check_fitted()
        return self._scores(x.to(self.device_))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B]`` of bool: ``True`` where the score exceeds ``threshold_`` (flagged as adversarial)."""
        return self.score(x) > self.threshold_

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` after the first squeezer (bit depth by default): what the defended classifier sees."""
        return self.squeezers[0](x)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class ``Tensor[B]`` of the squeezed input (see :meth:`squeeze`)."""
        self._check_fitted()
        return self.model_(self.squeeze(x.to(self.device_))).argmax(1)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def squeezing_rows(
    detector: FeatureSqueezingDetector,
    dataset: Dataset,
    attacks: Sequence[AttackSpec],
    *,
    batch_size: int = 256,
    progress: bool | None = None,
    **attack_kwargs: Any,
) -> list[dict[str, Any]]:
    """Per attack × eps on ``dataset`` (clean test images): how the fitted detector does.

    Columns: ``false_positive_rate`` (clean inputs flagged), ``detection_rate`` (adversarial
    inputs flagged), ``detection_rate_successful`` (flagged among the adversarial inputs
    that turned a correct prediction wrong), undefended ``clean_accuracy`` /
    ``robust_accuracy`` and the same with the squeezed input classified instead
    (``squeezed_clean_accuracy`` / ``squeezed_robust_accuracy``). The attack targets the
    undefended model (the detector is not differentiated through).
    """
    detector._check_fitted()
    model, dev = detector.model_, detector.device_
    n = flagged_clean = correct = sq_correct = 0
    for x, y in iter_batches(dataset, batch_size):
        x, y = x.to(dev), y.to(dev)
        with torch.no_grad():
            correct += int((model(x).argmax(1) == y).sum())
        flagged_clean += int(detector.predict(x).sum())
        sq_correct += int((detector.classify(x) == y).sum())
        n += len(y)
    if n == 0:
        raise RobustoodError("no clean images to evaluate feature squeezing on")
    base = {
        "defense": f"squeeze({', '.join(s.name for s in detector.squeezers)})",
        "threshold": detector.threshold_,
        "false_positive_rate": flagged_clean / n,
        "clean_accuracy": correct / n,
        "squeezed_clean_accuracy": sq_correct / n,
    }
    rows: list[dict[str, Any]] = []
    for name, eps in attacks:
        flagged = robust = sq_robust = successful = flagged_successful = 0
        for x, y, x_adv in adversarial_batches(
            model, dataset, name, eps, device=dev, batch_size=batch_size, progress=progress, **attack_kwargs
        ):
            with torch.no_grad():
                ok_clean = model(x).argmax(1) == y
                ok_adv = model(x_adv).argmax(1) == y
            flags = detector.predict(x_adv)
            success = ok_clean & ~ok_adv
            flagged += int(flags.sum())
            robust += int(ok_adv.sum())
            sq_robust += int((detector.classify(x_adv) == y).sum())
            successful += int(success.sum())
            flagged_successful += int((flags & success).sum())
        rows.append(
            {
                "attack": name,
                "eps": format_eps(eps),
                **base,
                "detection_rate": flagged / n,
                "detection_rate_successful": flagged_successful / successful if successful else float("nan"),
                "robust_accuracy": robust / n,
                "squeezed_robust_accuracy": sq_robust / n,
            }
        )
    return rows
