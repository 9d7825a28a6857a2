"""Plots of a :class:`~robustood.report.Report`: robust accuracy vs eps, and OOD AUROC per model."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

from . import output_dir, save_figure

if TYPE_CHECKING:
    from ..report import Report


def plot_report(report: Report, directory: Path) -> list[Path]:
    """Write ``robust_accuracy_vs_eps.png`` and ``ood_auroc.png`` (where the report has such rows)."""
    directory = output_dir(directory)
    written: list[Path] = []
    curves: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for r in report.rows:
        if r.metric == "robust_accuracy" and r.eps is not None:
            curves[(r.model, r.attack)][r.eps] = r.value
        elif r.metric == "accuracy" and r.input_set == "test" and not r.attack:
            for key in [k for k in curves if k[0] == r.model]:
                curves[key].setdefault(0.0, r.value)
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (model, attack), points in sorted(curves.items()):
            xs = sorted(points)
            ax.plot([x * 255 for x in xs], [points[x] for x in xs], marker="o", label=f"{model} · {attack}")
        ax.set_xlabel("eps (× 1/255)")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Robust accuracy vs perturbation budget")
        written.append(save_figure(fig, directory / "robust_accuracy_vs_eps.png"))
    auroc = [r for r in report.rows if r.metric == "auroc"]
    if auroc:
        groups = list(dict.fromkeys(f"{r.detector} | {r.input_set}" for r in auroc))
        models = list(dict.fromkeys(r.model for r in auroc))
        width = 0.8 / max(len(models), 1)
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups)), 4))
        for i, model in enumerate(models):
            vals = {f"{r.detector} | {r.input_set}": r.value for r in auroc if r.model == model}
            ax.bar([g + i * width for g in range(len(groups))], [vals.get(g, 0.0) for g in groups], width, label=model)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(
            [g + width * (len(models) - 1) / 2 for g in range(len(groups))], groups, rotation=30, ha="right", fontsize=8
        )
        ax.set_ylabel("AUROC (ID vs OOD)")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        ax.set_title("OOD detection per model")
        written.append(save_figure(fig, directory / "ood_auroc.png"))
    return written
