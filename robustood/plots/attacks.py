"""Plots of attack runs: example grids and the robust-accuracy curve.

The grid shows inputs the attack flipped (correct before, wrong after; for a targeted attack:
now the target), per input the original (true label, predicted label and its probability),
the adversarial image (predicted label and probability, and the target of a targeted attack)
and the perturbation amplified to the full grey range (``0.5 + δ / (2·max|δ|)``, titled with
its norm in the attack's norm), so even a 2/255 change is visible. A prediction the attack
changed is red, one it left alone black, in every grid.

Each plot has a ``*_figure`` function returning the matplotlib figure (what tests inspect)
and a ``plot_*`` function writing it as PNG.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..errors import RobustoodError
from ..utils import format_eps
from . import CHANGED, UNCHANGED, annotate_bars, output_dir, save_figure, title, zoom

if TYPE_CHECKING:
    from ..attacks.metrics import AttackResult

__all__ = [
    "accuracy_figure",
    "examples_figure",
    "flipped",
    "plot_accuracy_vs_eps",
    "plot_attacks",
    "plot_examples",
]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _image(a: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``C×H×W`` → something ``imshow`` takes, and the colour map for grey images."""
    if a.shape[0] == 1:
        return a[0], "gray"
    return np.transpose(a, (1, 2, 0)), None


def flipped(result: AttackResult) -> np.ndarray:
    """Indices of the kept inputs the attack flipped: classified correctly before and wrongly
    after (targeted: now classified as the target)."""
    s = result.samples
    if s is None:
        return np.zeros(0, dtype=np.int64)
    targeted = s.target >= 0
    hit = np.where(targeted, s.pred_adv == s.target, s.pred_adv != s.y)
    return np.flatnonzero((s.pred == s.y) & hit)


def examples_figure(
    result: AttackResult,
    class_names: Sequence[str] | None = None,
    n: int = 8,
    *,
    model: str | None = None,
    dataset: str | None = None,
) -> Figure:
    """A 3-row grid (original / adversarial / amplified perturbation) of up to ``n`` kept inputs the
    attack flipped (the first kept inputs when it flipped none; the title says which)."""
    s = result.samples
    if s is None or len(s.x) == 0:
        raise RobustoodError("example plots need kept inputs; call run_attack(..., keep=8)")
    names = [str(c) for c in class_names] if class_names is not None else None

    def name(k: int) -> str:
        return names[k] if names is not None and 0 <= k < len(names) else str(k)

    hits = flipped(result)
    chosen = hits[:n] if len(hits) else np.arange(min(n, len(s.x)))
    m = len(chosen)
    l2 = result.norm == "l2"
    fig, axes = plt.subplots(3, m, figsize=(1.6 * m + 0.8, 5.6), squeeze=False)
    for j, k in enumerate(chosen):
        delta = s.x_adv[k] - s.x[k]
        scale = float(np.abs(delta).max())
        amplified = 0.5 + delta / (2 * scale) if scale > 0 else np.full_like(delta, 0.5)
        size = f"‖δ‖₂={float(np.linalg.norm(delta)):.3f}" if l2 else f"‖δ‖∞={scale:.3f}"
        target = f" (→{name(int(s.target[k]))})" if int(s.target[k]) >= 0 else ""
        changed = int(s.pred_adv[k]) != int(s.pred[k])
        for i, (img, text, color) in enumerate(
            (
                (s.x[k], f"y={name(int(s.y[k]))}\n{name(int(s.pred[k]))} {s.conf[k]:.0%}", UNCHANGED),
                (
                    s.x_adv[k],
                    f"{name(int(s.pred_adv[k]))} {s.conf_adv[k]:.0%}{target}",
                    CHANGED if changed else UNCHANGED,
                ),
                (np.clip(amplified, 0, 1), size, UNCHANGED),
            )
        ):
            arr, cmap = _image(np.clip(img, 0, 1))
            ax = axes[i, j]
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(text, fontsize=8, color=color)
            ax.set_xticks([])
            ax.set_yticks([])
    for i, label in enumerate(("original", "adversarial", "perturbation\n(amplified)")):
        axes[i, 0].set_ylabel(label, fontsize=9)
    shown = (
        f"{m} inputs the attack flipped ({len(hits)} of {len(s.x)} kept)"
        if len(hits)
        else f"no kept input flipped: the first {m} of {len(s.x)}"
    )
    head = title(result.attack, model=model, dataset=dataset, budget=format_eps(result.eps))
    fig.suptitle(
        f"{head}\n{shown}; robust accuracy {result.robust_accuracy:.1%}; red = prediction changed", fontsize=10
    )
    return fig


def plot_examples(
    result: AttackResult,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    n: int = 8,
    *,
    model: str | None = None,
    dataset: str | None = None,
) -> Path:
    """Write :func:`examples_figure` as PNG."""
    return save_figure(examples_figure(result, class_names, n, model=model, dataset=dataset), path)


def accuracy_figure(results: Sequence[AttackResult], *, model: str | None = None, dataset: str | None = None) -> Figure:
    """Robust accuracy against eps, one line per attack, each starting at the clean accuracy
    (eps = 0); a bar chart (clean, then one bar per attack, values written on the bars) when
    there is one budget. The y axis zooms in when the values differ by less than 0.2.

    eps is shown in units of 1/255 when every result is an L∞ attack, else in [0, 1] pixel units.
    """
    if not results:
        raise RobustoodError("no attack results to plot")
    clean = results[0].clean_accuracy
    budgets = sorted({r.eps for r in results if r.eps > 0})
    by_attack: dict[str, list[AttackResult]] = {}
    for r in results:
        by_attack.setdefault(r.attack, []).append(r)
    if len(budgets) <= 1:
        fig, ax = plt.subplots(figsize=(1.2 * (len(by_attack) + 1) + 2.5, 3.8))
        labels = ["clean", *by_attack]
        values = [clean] + [max(rs, key=lambda r: r.eps).robust_accuracy for rs in by_attack.values()]
        bars = ax.bar(labels, values, color=["grey"] + [f"C{i}" for i in range(len(by_attack))])
        annotate_bars(ax, bars)
        ax.set_ylim(*zoom(values))
        ax.set_ylabel("accuracy")
        budget = format_eps(budgets[0]) if budgets else "0"
        ax.set_title(title("Robust accuracy", model=model, dataset=dataset, budget=budget), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        return fig
    unit = 255.0 if all(r.norm == "linf" for r in results) else 1.0
    fig, ax = plt.subplots(figsize=(5.8, 3.9))
    values = [clean]
    for label, rs in by_attack.items():
        points = {0.0: clean, **{r.eps: r.robust_accuracy for r in rs}}
        xs = sorted(points)
        values += [points[x] for x in xs]
        ax.plot([x * unit for x in xs], [points[x] for x in xs], marker="o", label=label)
    ax.set_xlabel("eps (× 1/255)" if unit == 255.0 else "eps (L2, pixel units)")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(*zoom(values))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title("Robust accuracy vs eps", model=model, dataset=dataset), fontsize=10)
    return fig


def plot_accuracy_vs_eps(
    results: Sequence[AttackResult], path: str | Path, *, model: str | None = None, dataset: str | None = None
) -> Path:
    """Write :func:`accuracy_figure` as PNG."""
    return save_figure(accuracy_figure(results, model=model, dataset=dataset), path)


def plot_attacks(
    results: Sequence[AttackResult],
    directory: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    model: str | None = None,
    dataset: str | None = None,
) -> list[Path]:
    """Write ``accuracy_vs_eps.png`` and, per attack × eps > 0 with kept inputs, ``<attack>_eps<eps>.png``."""
    directory = output_dir(directory)
    written = [plot_accuracy_vs_eps(results, directory / "accuracy_vs_eps.png", model=model, dataset=dataset)]
    for r in results:
        if r.eps > 0 and r.samples is not None and len(r.samples.x):
            name = f"{_slug(r.attack)}_eps{_slug(format_eps(r.eps))}.png"
            written.append(plot_examples(r, directory / name, class_names, model=model, dataset=dataset))
    return written
