"""Gradient-masking checks: signs that a robust accuracy overstates robustness.

Athalye, Carlini & Wagner (ICML 2018) list how defenses that hide gradients fool gradient
attacks; AutoAttack's reference (``pyautoattack``'s ``checks.py``) tests a few of them
before it runs. robustood measures these on the model (:func:`model_checks`, on one batch
of clean test inputs) and reads the rest off the evaluation's rows
(:func:`masking_warnings`):

- ``zero_gradient``: inputs whose cross-entropy gradient is exactly zero (a saturated
  softmax, a non-differentiable layer): gradient attacks cannot move them;
- ``randomised``: two identical forward passes give different outputs (a randomised
  defense): one attack run measures one draw, not the model;
- ``probabilities``: outputs are non-negative and each row sums to 1 (a softmax layer at
  the end): the attacks' losses expect logits;
- ``black_box``: Square, which uses no gradient, broke inputs every gradient attack at the
  same eps failed on: the gradients mislead;
- ``eps_not_monotone``: robust accuracy rises with eps for one attack: a larger budget
  can only make an optimal attack stronger, so the attack is failing.

Each warning says what it means and what to try.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import attack_mode

__all__ = ["CHECK_METRICS", "MaskingWarning", "masking_warnings", "model_checks"]

CHECK_METRICS = ("zero_gradient_share", "output_change", "probability_outputs")
"""The row metrics :func:`model_checks` gives (on the clean test set's rows)."""

#: outputs of two identical passes differing by more than this (in L2, rows normalised) mean a randomised model
RANDOM_TOLERANCE = 1e-4
#: tolerance for "non-negative rows summing to 1"
PROBABILITY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class MaskingWarning:
    """One warning: the model, a short ``code``, what was seen and what to try."""

    model: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.model}: {self.message}"


def model_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The model-side checks on one batch of clean inputs ``x`` (``B×C×H×W`` in [0, 1]), labels ``y``.

    Returns ``zero_gradient_share`` (inputs whose cross-entropy input gradient is exactly 0),
    ``output_change`` (largest L2 distance between the normalised outputs of two identical
    forward passes) and ``probability_outputs`` (1.0 when every output row is non-negative
    and sums to 1, else 0.0). Two forward passes and one backward pass.
    """
    with attack_mode(model), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        out = model(xg).float()
        (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xg)
        with torch.no_grad():
            again = model(x).float()
    out = out.detach()
    zero = (grad.flatten(1).abs().sum(1) == 0).double().mean()

    def unit(v: torch.Tensor) -> torch.Tensor:
        return v / (v.flatten(1).norm(dim=1, keepdim=True) + 1e-10)

    change = (unit(out) - unit(again)).flatten(1).norm(dim=1).max()
    tol = PROBABILITY_TOLERANCE
    probs = bool(out.max() < 1 + tol) and bool(out.min() > -tol) and bool(((out.sum(1) - 1).abs() < tol).all())
    return {"zero_gradient_share": float(zero), "output_change": float(change), "probability_outputs": float(probs)}


def _fmt_eps(eps: float | None) -> str:
    from ..utils import format_eps

    return format_eps(eps or 0.0)


def masking_warnings(rows: Iterable[Any]) -> list[MaskingWarning]:
    """The warnings the rows of an evaluation support (rows with ``model``, ``input_set``,
    ``attack``, ``eps``, ``metric``, ``value``, ``detector``, as :class:`robustood.report.Row`)."""
    rows = list(rows)
    out: list[MaskingWarning] = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model and not r.detector]
        checks = {r.metric: r.value for r in mine if not r.attack and r.metric in CHECK_METRICS}
        zero = checks.get("zero_gradient_share", 0.0) or 0.0
        if zero > 0:
            out.append(
                MaskingWarning(
                    model,
                    "zero_gradient",
                    f"{zero:.0%} of the checked inputs have an all-zero input gradient: gradient attacks "
                    "cannot move them, so their robust accuracy is an upper bound. Try: attack the logits rather "
                    "than probabilities (for distill:T the model already outputs logits), and trust the "
                    "black-box Square attack (autoattack runs it) over FGSM/PGD here.",
                )
            )
        if (checks.get("output_change", 0.0) or 0.0) > RANDOM_TOLERANCE:
            out.append(
                MaskingWarning(
                    model,
                    "randomised",
                    "two identical forward passes gave different outputs: the model is randomised (dropout "
                    "left on, random input transforms). One attack run measures one random draw. Try: evaluate in "
                    "eval mode, or average gradients over draws (EOT) and report the worst case over repeats.",
                )
            )
        if (checks.get("probability_outputs", 0.0) or 0.0) > 0:
            out.append(
                MaskingWarning(
                    model,
                    "probabilities",
                    "the outputs look like probabilities (non-negative, rows summing to 1), not logits: "
                    "cross-entropy on them saturates and hides gradients. Try: remove the final softmax and attack "
                    "the logits; the DLR loss of apgd-dlr / apgd-t is scale-invariant but still needs logits.",
                )
            )
        for r in mine:
            if r.metric == "black_box_only" and (r.value or 0) > 0:
                out.append(
                    MaskingWarning(
                        model,
                        "black_box",
                        f"at eps {_fmt_eps(r.eps)} ({r.attack}), the black-box Square attack broke {r.value:.1%} "
                        "of all inputs where every gradient attack had failed: the gradients mislead (masking). "
                        "Try: trust the "
                        "worst case (autoattack), look for saturated softmax, non-differentiable or randomised "
                        "layers; try more Square queries or an adaptive attack.",
                    )
                )
        by_attack: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in mine:
            if r.metric == "robust_accuracy" and r.attack and r.eps is not None and r.value == r.value:
                by_attack[r.attack].append((float(r.eps), float(r.value)))
        for attack, points in by_attack.items():
            points.sort()
            for (e0, v0), (e1, v1) in itertools.pairwise(points):
                if e1 > e0 and v1 > v0:
                    out.append(
                        MaskingWarning(
                            model,
                            "eps_not_monotone",
                            f"{attack}: robust accuracy rises from {v0:.4f} at eps {_fmt_eps(e0)} to {v1:.4f} at "
                            f"eps {_fmt_eps(e1)}; a larger budget cannot help the model, so the attack is failing "
                            "(gradient masking or too few steps). Try: more steps or restarts, apgd-ce / "
                            "autoattack, and report the worst case.",
                        )
                    )
                    break
    return out
