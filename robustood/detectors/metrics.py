"""OOD detection metrics from scores (higher = more OOD), via pytorch-ood's ``OODMetrics``.

Conventions are pytorch-ood's: OOD samples are the *positive* class (labels < 0), so

* ``auroc``: P(score of a random OOD input > score of a random ID input), ties count half;
  1.0 = perfectly separated, 0.5 = chance, 0.0 = perfectly *reversed* (never flipped here);
* ``aupr_in`` / ``aupr_out``: area under the precision-recall curve (trapezoidal rule) with
  ID resp. OOD as the positive class;
* ``fpr_at_95_tpr``: fraction of ID inputs flagged at the first threshold that flags 95 %
  of the OOD inputs (lower is better);
* ``detection_accuracy``: fraction of ID and OOD inputs classified correctly by the rule
  "OOD if score > threshold", with the threshold calibrated on held-out ID data
  (:func:`calibrate_threshold`: 95 % of ID validation inputs are accepted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import RobustoodError

#: Scores of a set of inputs: a 1-D tensor, array or sequence of floats.
Scores = torch.Tensor | np.ndarray | Sequence[float]

__all__ = ["METRICS", "calibrate_threshold", "ood_metrics"]

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "detection_accuracy")


def _as_tensor(scores: Scores, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(scores, dtype=np.float64) if not isinstance(scores, torch.Tensor) else scores)
    t = t.detach().double().flatten().cpu()
    if t.numel() == 0:
        raise RobustoodError(f"no {what} scores: the {what} set has zero samples; give it at least one image")
    if not torch.isfinite(t).all():
        raise RobustoodError(f"the {what} scores contain NaN or infinite values; check the model and detector")
    return t


def calibrate_threshold(id_val_scores: Scores, tpr: float = 0.95) -> float:
    """The score below which a fraction ``tpr`` of held-out ID inputs fall (its ``tpr`` quantile).

    With the default, inputs scoring above it are called OOD and 95 % of ID inputs are kept.
    """
    if not 0 < tpr <= 1:
        raise RobustoodError(f"tpr must be a fraction in (0, 1], got {tpr}; did you mean {tpr / 100:g}?")
    t = _as_tensor(id_val_scores, "ID validation")
    return float(torch.quantile(t, tpr))


def ood_metrics(id_scores: Scores, ood_scores: Scores, *, threshold: float | None = None) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out, FPR at 95 % TPR (and detection accuracy if ``threshold`` is given).

    Args:
        id_scores: scores ``[N]`` of in-distribution inputs (tensor or array).
        ood_scores: scores ``[M]`` of OOD inputs.
        threshold: decision threshold (see :func:`calibrate_threshold`); ``detection_accuracy``
            is NaN without one.

    Returns:
        ``{metric: float}`` with the keys of :data:`METRICS`, values in [0, 1].

    Raises:
        RobustoodError: an empty or non-finite score set.

    >>> ood_metrics([0.0, 1.0], [2.0, 3.0])["auroc"]
    1.0
    """
    from . import _pood  # pytorch-ood, imported on first use

    s_id, s_ood = _as_tensor(id_scores, "ID"), _as_tensor(ood_scores, "OOD")
    scores = torch.cat([s_id, s_ood])
    labels = torch.cat([torch.zeros(len(s_id), dtype=torch.long), -torch.ones(len(s_ood), dtype=torch.long)])
    raw = _pood.OODMetrics(fpr_at=0.95).update(scores, labels).compute()
    out = {
        "auroc": float(raw["AUROC"]),
        "aupr_in": float(raw["AUPR-IN"]),
        "aupr_out": float(raw["AUPR-OUT"]),
        "fpr_at_95_tpr": float(raw["FPR95TPR"]),
        "detection_accuracy": math.nan,
    }
    if threshold is not None:
        correct = int((s_id <= threshold).sum()) + int((s_ood > threshold).sum())
        out["detection_accuracy"] = correct / len(scores)
    return out
