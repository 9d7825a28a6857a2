"""Plots of an OOD evaluation: score histograms (ID vs each OOD set), ROC and PR curves.

Histograms are outlines on shared bins (``log=True`` for a log count axis); the PR plot
carries each set's no-skill baseline (the share of OOD inputs).

The curves are drawn from the kept per-sample scores (OOD = positive class, higher score =
more OOD); the legends quote the AUROC / AUPR-Out of the result's rows, so the picture and
the table always agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from ..errors import RobustoodError
from . import output_dir, save_figure, title

if TYPE_CHECKING:
    from ..detectors.run import OODResult

__all__ = ["curves_figures", "histogram_figure", "plot_detector_attacks", "plot_ood"]

_ID = "id"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def histogram_figure(
    result: OODResult, detector: str, *, model: str | None = None, dataset: str | None = None, log: bool = False
) -> Figure:
    """Step histograms (outlines, not filled, so overlaps stay readable) of one detector's ID and
    OOD scores on shared bins, the calibrated threshold dashed; ``log``: a log count axis."""
    if result.scores is None:
        raise RobustoodError("plots need the per-sample scores; call run_ood(..., keep_scores=True)")
    sets = [s for s in result.scores if s != _ID]
    id_scores = result.scores[_ID][detector]
    fig, ax = plt.subplots(figsize=(6, 4))
    everything = np.concatenate([id_scores, *(result.scores[s][detector] for s in sets)])
    lo, hi = float(everything.min()), float(everything.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    ax.hist(id_scores, bins=bins, histtype="step", linewidth=1.8, color="black", label=f"ID (test, n={len(id_scores)})")
    for i, s in enumerate(sets):
        ood = result.scores[s][detector]
        ax.hist(ood, bins=bins, histtype="step", linewidth=1.4, color=f"C{i}", label=f"{s} (n={len(ood)})")
    if detector in result.thresholds:
        ax.axvline(result.thresholds[detector], color="grey", lw=1, ls="--", label="threshold (95 % ID kept)")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(f"{detector} score (higher = more OOD)")
    ax.set_ylabel("count (log)" if log else "count")
    ax.set_title(title(f"{detector}: ID vs OOD scores", model=model, dataset=dataset), fontsize=10)
    ax.legend(fontsize=8)
    return fig


def curves_figures(
    result: OODResult, detector: str, *, model: str | None = None, dataset: str | None = None
) -> tuple[Figure, Figure]:
    """The ROC (chance diagonal) and precision-recall figure (each set's baseline, the share of
    OOD inputs, dashed in its colour) of one detector, OOD = positive class."""
    if result.scores is None:
        raise RobustoodError("plots need the per-sample scores; call run_ood(..., keep_scores=True)")
    metrics = {(r["detector"], r["ood_set"]): r for r in result.rows}
    sets = [s for s in result.scores if s != _ID]
    id_scores = result.scores[_ID][detector]
    fig_roc, ax_roc = plt.subplots(figsize=(5, 5))
    fig_pr, ax_pr = plt.subplots(figsize=(5, 5))
    for i, s in enumerate(sets):
        ood = result.scores[s][detector]
        y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood))]
        score = np.r_[id_scores, ood]
        row = metrics.get((detector, s), {})
        fpr, tpr, _ = roc_curve(y, score)
        ax_roc.plot(fpr, tpr, color=f"C{i}", label=f"{s} (AUROC {row.get('auroc', float('nan')):.3f})")
        precision, recall, _ = precision_recall_curve(y, score)
        ax_pr.plot(recall, precision, color=f"C{i}", label=f"{s} (AUPR-Out {row.get('aupr_out', float('nan')):.3f})")
        base = len(ood) / (len(ood) + len(id_scores))
        ax_pr.axhline(base, color=f"C{i}", lw=0.9, ls="--", label=f"{s} baseline {base:.2f}")
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    ax_roc.set_xlabel("false positive rate (ID flagged)")
    ax_roc.set_ylabel("true positive rate (OOD flagged)")
    ax_roc.set_title(title(f"{detector}: ROC (OOD = positive)", model=model, dataset=dataset), fontsize=10)
    ax_roc.legend(fontsize=8, loc="lower right")
    ax_pr.set_xlabel("recall (OOD)")
    ax_pr.set_ylabel("precision (OOD)")
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_title(title(f"{detector}: precision-recall", model=model, dataset=dataset), fontsize=10)
    ax_pr.legend(fontsize=8, loc="lower left")
    return fig_roc, fig_pr


def plot_ood(
    result: OODResult,
    directory: str | Path,
    *,
    model: str | None = None,
    dataset: str | None = None,
    log: bool = False,
) -> list[Path]:
    """Write ``<detector>_hist.png``, ``<detector>_roc.png`` and ``<detector>_pr.png`` per detector.

    Needs the per-sample scores: run the evaluation with ``keep_scores=True``. ``log``: score
    histograms with a logarithmic count axis.
    """
    if result.scores is None:
        raise RobustoodError("plots need the per-sample scores; call run_ood(..., keep_scores=True)")
    directory = output_dir(directory)
    written: list[Path] = []
    for det in result.scores[_ID]:
        name = _slug(det)
        written.append(
            save_figure(
                histogram_figure(result, det, model=model, dataset=dataset, log=log), directory / f"{name}_hist.png"
            )
        )
        fig_roc, fig_pr = curves_figures(result, det, model=model, dataset=dataset)
        written.append(save_figure(fig_roc, directory / f"{name}_roc.png"))
        written.append(save_figure(fig_pr, directory / f"{name}_pr.png"))
    return written


def plot_detector_attacks(result: OODResult, directory: str | Path) -> list[Path]:
    """Write ``<detector>_<attack>_attacked_hist.png`` per detector × detector attack: the clean
    and attacked score histograms of the ID test inputs and of every attacked OOD set.

    Needs the kept scores of a run with detector attacks (``keep_scores=True``).
    """
    if result.scores is None or not result.attacked:
        raise RobustoodError("attacked-score plots need a run with detector attacks and keep_scores=True")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sets = [s for s in result.attacked if s != _ID]
    names = list(result.attacked.get(_ID, {}).get("scores", {}))
    written: list[Path] = []
    for name in names:
        det = name.split("@", 1)[0]
        pairs = [("ID (test)", result.scores[_ID][det], result.attacked[_ID]["scores"][name])]
        pairs += [(s, result.scores[s][det], result.attacked[s]["scores"][name]) for s in sets]
        everything = np.concatenate([np.concatenate([c, a]) for _, c, a in pairs])
        everything = everything[np.isfinite(everything)]
        lo, hi = (float(everything.min()), float(everything.max())) if everything.size else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        fig, axes = plt.subplots(len(pairs), 1, figsize=(6, 2.2 * len(pairs)), sharex=True, squeeze=False)
        for ax, (label, clean, attacked) in zip(axes[:, 0], pairs, strict=True):
            ax.hist(clean, bins=bins, alpha=0.55, density=True, label=f"{label}: clean")
            ax.hist(attacked, bins=bins, alpha=0.55, density=True, label=f"{label}: attacked")
            if det in result.thresholds:
                ax.axvline(result.thresholds[det], color="black", lw=1, ls="--")
            ax.set_ylabel("density")
            ax.legend(fontsize=7)
        axes[-1, 0].set_xlabel(f"{det} score (higher = more OOD)")
        axes[0, 0].set_title(f"{name}: ID pushed up, OOD pushed down")
        written.append(save_figure(fig, directory / f"{_slug(name)}_attacked_hist.png"))
    return written
