"""Plots of an OOD evaluation: score histograms (ID vs each OOD set), ROC and PR curves.

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
from sklearn.metrics import precision_recall_curve, roc_curve

from ..errors import RobustoodError
from . import output_dir, save_figure

if TYPE_CHECKING:
    from ..detectors.run import OODResult

__all__ = ["plot_ood"]

_ID = "id"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def plot_ood(result: OODResult, directory: str | Path) -> list[Path]:
    """Write ``<detector>_hist.png``, ``<detector>_roc.png`` and ``<detector>_pr.png`` per detector.

    Needs the per-sample scores: run the evaluation with ``keep_scores=True``.
    """
    if result.scores is None:
        raise RobustoodError("plots need the per-sample scores; call run_ood(..., keep_scores=True)")
    directory = output_dir(directory)
    metrics = {(r["detector"], r["ood_set"]): r for r in result.rows}
    sets = [s for s in result.scores if s != _ID]
    written: list[Path] = []
    for det, id_scores in result.scores[_ID].items():
        name = _slug(det)
        fig, ax = plt.subplots(figsize=(6, 4))
        everything = np.concatenate([id_scores, *(result.scores[s][det] for s in sets)])
        lo, hi = float(everything.min()), float(everything.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        ax.hist(id_scores, bins=bins, alpha=0.6, density=True, label="ID (test)")
        for s in sets:
            ax.hist(result.scores[s][det], bins=bins, alpha=0.45, density=True, label=s)
        if det in result.thresholds:
            ax.axvline(result.thresholds[det], color="black", lw=1, ls="--", label="threshold (95 % ID kept)")
        ax.set_xlabel(f"{det} score (higher = more OOD)")
        ax.set_ylabel("density")
        ax.set_title(f"{det}: ID vs OOD scores")
        ax.legend(fontsize=8)
        written.append(save_figure(fig, directory / f"{name}_hist.png"))

        fig_roc, ax_roc = plt.subplots(figsize=(5, 5))
        fig_pr, ax_pr = plt.subplots(figsize=(5, 5))
        for s in sets:
            ood = result.scores[s][det]
            y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood))]
            score = np.r_[id_scores, ood]
            row = metrics.get((det, s), {})
            fpr, tpr, _ = roc_curve(y, score)
            ax_roc.plot(fpr, tpr, label=f"{s} (AUROC {row.get('auroc', float('nan')):.3f})")
            precision, recall, _ = precision_recall_curve(y, score)
            ax_pr.plot(recall, precision, label=f"{s} (AUPR-Out {row.get('aupr_out', float('nan')):.3f})")
        ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax_roc.set_xlabel("false positive rate (ID flagged)")
        ax_roc.set_ylabel("true positive rate (OOD flagged)")
        ax_roc.set_title(f"{det}: ROC (OOD = positive)")
        ax_roc.legend(fontsize=8, loc="lower right")
        written.append(save_figure(fig_roc, directory / f"{name}_roc.png"))
        ax_pr.set_xlabel("recall (OOD)")
        ax_pr.set_ylabel("precision (OOD)")
        ax_pr.set_ylim(0, 1.02)
        ax_pr.set_title(f"{det}: precision-recall (OOD = positive)")
        ax_pr.legend(fontsize=8, loc="lower left")
        written.append(save_figure(fig_pr, directory / f"{name}_pr.png"))
    return written
