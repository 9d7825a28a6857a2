"""Plots of defenses: feature squeezing's detection rates and accuracies, from a report's rows.

:func:`squeezing_figure` returns the figure (what tests inspect); :func:`plot_squeezing`
writes it as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..errors import RobustoodError
from ..utils import format_eps
from . import annotate_bars, output_dir, save_figure, title

if TYPE_CHECKING:
    from ..report import Report

__all__ = ["plot_squeezing", "squeezing_figure"]

SQUEEZE = "squeeze"


def squeezing_figure(report: Report, model: str, *, dataset: str | None = None, defense: str = SQUEEZE) -> Figure:
    """Two panels per attack × eps: left, the share of adversarial inputs flagged (all, and those
    that fooled the model) against the false-positive rate on clean inputs (dashed); right,
    robust accuracy without and with the squeezed input classified instead."""
    rows = [r for r in report.rows if r.model == model and r.detector == SQUEEZE]
    fpr = next((r.value for r in rows if r.metric == "false_positive_rate"), None)
    attacked = [r for r in rows if r.attack and r.metric == "detection_rate"]
    if fpr is None or not attacked:
        raise RobustoodError(
            "the report has no feature-squeezing rows under attack; evaluate with defenses=['squeeze']"
        )
    keys = [(r.attack, r.eps) for r in attacked]
    labels = [f"{a}\n@{format_eps(e or 0.0)}" for a, e in keys]

    def value(metric: str, attack: str, eps: float | None, detector: str = SQUEEZE) -> float:
        for r in report.rows:
            if (r.model, r.metric, r.attack, r.eps, r.detector) == (model, metric, attack, eps, detector):
                return r.value
        return float("nan")

    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(keys) + 4), 4))
    xs = range(len(keys))
    w = 0.38
    bars = left.bar(
        [x - w / 2 for x in xs], [value("detection_rate", a, e) for a, e in keys], w, label="all adversarial"
    )
    annotate_bars(left, bars, "{:.2f}")
    bars = left.bar(
        [x + w / 2 for x in xs],
        [value("detection_rate_successful", a, e) for a, e in keys],
        w,
        label="successful adversarial",
    )
    annotate_bars(left, bars, "{:.2f}")
    left.axhline(fpr, color="grey", ls="--", lw=1, label=f"clean flagged (FPR {fpr:.2f})")
    left.set_xticks(list(xs), labels, fontsize=8)
    left.set_ylim(0, 1.05)
    left.set_ylabel("flagged as adversarial")
    left.set_title("detection", fontsize=9)
    left.legend(fontsize=7, loc="upper left")
    robust = [value("robust_accuracy", a, e, "") for a, e in keys]
    squeezed = [value("squeezed_robust_accuracy", a, e) for a, e in keys]
    annotate_bars(right, right.bar([x - w / 2 for x in xs], robust, w, label="as attacked"), "{:.2f}")
    annotate_bars(right, right.bar([x + w / 2 for x in xs], squeezed, w, label="squeezed input"), "{:.2f}")
    right.set_xticks(list(xs), labels, fontsize=8)
    right.set_ylim(0, 1.05)
    right.set_ylabel("robust accuracy")
    right.set_title("classifying the squeezed input", fontsize=9)
    right.legend(fontsize=7, loc="upper right")
    fig.suptitle(title(f"Feature squeezing {defense}", model=model, dataset=dataset), fontsize=10)
    return fig


def plot_squeezing(
    report: Report, model: str, directory: str | Path, *, dataset: str | None = None, defense: str = SQUEEZE
) -> list[Path]:
    """Write ``squeezing.png`` (see :func:`squeezing_figure`) into ``directory``."""
    fig = squeezing_figure(report, model, dataset=dataset, defense=defense)
    return [save_figure(fig, output_dir(directory) / "squeezing.png")]
