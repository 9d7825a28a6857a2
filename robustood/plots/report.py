"""Plots of a :class:`~robustood.report.Report`: robust accuracy vs eps, and OOD AUROC per model.

:func:`accuracy_figure` and :func:`auroc_figure` return the figures (what tests inspect);
:func:`plot_report` writes them as PNG.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..utils import format_eps
from . import annotate_bars, output_dir, save_figure, title, zoom

if TYPE_CHECKING:
    from ..report import Report

__all__ = ["accuracy_figure", "auroc_figure", "plot_report"]


def _clean(report: Report) -> dict[str, float]:
    return {r.model: r.value for r in report.rows if r.metric == "accuracy" and r.input_set == "test" and not r.attack}


def accuracy_figure(report: Report, *, dataset: str | None = None) -> Figure | None:
    """Robust accuracy per model × attack against eps, each curve starting at the model's clean
    accuracy (eps = 0); grouped bars (clean, then each attack, per model) when the report has one
    budget. ``None`` without attack rows."""
    clean = _clean(report)
    curves: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for r in report.rows:
        if r.metric == "robust_accuracy" and r.eps is not None and not r.detector:
            curves[(r.model, r.attack)][r.eps] = r.value
    if not curves:
        return None
    budgets = sorted({e for points in curves.values() for e in points if e > 0})
    models = list(dict.fromkeys(m for m, _ in curves))
    attacks = list(dict.fromkeys(a for _, a in curves))
    if len(budgets) <= 1:
        labels = ["clean", *attacks]
        width = 0.8 / len(labels)
        fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + len(models) * len(labels) * 0.55), 4))
        values: list[float] = []
        for i, label in enumerate(labels):
            ys = [
                clean.get(m, float("nan"))
                if label == "clean"
                else next(iter(curves.get((m, label), {}).values()), float("nan"))
                for m in models
            ]
            values += ys
            bars = ax.bar([g + i * width for g in range(len(models))], ys, width, label=label, color=f"C{i}")
            annotate_bars(ax, bars)
        ax.set_xticks([g + width * (len(labels) - 1) / 2 for g in range(len(models))], models, fontsize=8)
        ax.set_ylim(*zoom(values))
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        budget = format_eps(budgets[0]) if budgets else "0"
        ax.set_title(title("Clean and robust accuracy", dataset=dataset, budget=budget), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        return fig
    fig, ax = plt.subplots(figsize=(6.5, 4))
    values = []
    for (model, attack), points in curves.items():
        points = {0.0: clean.get(model, float("nan")), **points}
        xs = sorted(points)
        values += [points[x] for x in xs]
        ax.plot([x * 255 for x in xs], [points[x] for x in xs], marker="o", label=f"{model} · {attack}")
    ax.set_xlabel("eps (× 1/255)")
    ax.set_ylabel("robust accuracy (eps = 0: clean)")
    ax.set_ylim(*zoom(values))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title("Robust accuracy vs eps", dataset=dataset), fontsize=10)
    return fig


def auroc_figure(report: Report, *, dataset: str | None = None) -> Figure | None:
    """AUROC per detector × OOD set, one bar per model, values on the bars, the legend beside the
    axes and the axis zoomed when the values are close. ``None`` without OOD rows."""
    auroc = [r for r in report.rows if r.metric == "auroc"]
    if not auroc:
        return None
    groups = list(dict.fromkeys(f"{r.detector} | {r.input_set}" for r in auroc))
    models = list(dict.fromkeys(r.model for r in auroc))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups) + 2), 4))
    values: list[float] = []
    for i, model in enumerate(models):
        vals = {f"{r.detector} | {r.input_set}": r.value for r in auroc if r.model == model}
        ys = [vals.get(g, float("nan")) for g in groups]
        values += ys
        bars = ax.bar([g + i * width for g in range(len(groups))], ys, width, label=model)
        annotate_bars(ax, bars)
    lo, hi = zoom(values)
    if lo <= 0.5:
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(
        [g + width * (len(models) - 1) / 2 for g in range(len(groups))], groups, rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel("AUROC (ID vs OOD)")
    ax.set_ylim(lo, hi)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title("OOD detection (AUROC)", dataset=dataset), fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def plot_report(report: Report, directory: Path, *, dataset: str | None = None) -> list[Path]:
    """Write ``robust_accuracy_vs_eps.png`` and ``ood_auroc.png`` (where the report has such rows)."""
    directory = output_dir(directory)
    dataset = dataset or (report.meta.get("config") or {}).get("dataset")
    written: list[Path] = []
    for fig, name in (
        (accuracy_figure(report, dataset=dataset), "robust_accuracy_vs_eps.png"),
        (auroc_figure(report, dataset=dataset), "ood_auroc.png"),
    ):
        if fig is not None:
            written.append(save_figure(fig, directory / name))
    return written
