"""Plots of attack runs: example grids and the accuracy-vs-epsilon curve.

The grid shows, per kept input, the original (true label, predicted label and its
probability), the adversarial image (predicted label and probability, and the target
of a targeted attack) and the perturbation amplified to the full grey range
(``0.5 + δ / (2·max|δ|)``, titled with its norm in the attack's norm), so even a 2/255
change is visible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from ..errors import RobustoodError
from ..utils import format_eps
from . import save_figure

if TYPE_CHECKING:
    from ..attacks.metrics import AttackResult

__all__ = ["plot_accuracy_vs_eps", "plot_attacks", "plot_examples"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _image(a: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``C×H×W`` → something ``imshow`` takes, and the colour map for grey images."""
    if a.shape[0] == 1:
        return a[0], "gray"
    return np.transpose(a, (1, 2, 0)), None


def plot_examples(result: AttackResult, path: str | Path, class_names: Sequence[str] | None = None, n: int = 8) -> Path:
    """Write a 3-row grid (original / adversarial / amplified perturbation) of up to ``n`` kept inputs."""
    s = result.samples
    if s is None or len(s.x) == 0:
        raise RobustoodError("example plots need kept inputs; call run_attack(..., keep=8)")
    names = [str(c) for c in class_names] if class_names is not None else None

    def name(k: int) -> str:
        return names[k] if names is not None and 0 <= k < len(names) else str(k)

    m = min(n, len(s.x))
    l2 = result.norm == "l2"
    fig, axes = plt.subplots(3, m, figsize=(1.6 * m + 0.8, 5.4), squeeze=False)
    for j in range(m):
        delta = s.x_adv[j] - s.x[j]
        scale = float(np.abs(delta).max())
        amplified = 0.5 + delta / (2 * scale) if scale > 0 else np.full_like(delta, 0.5)
        size = f"‖δ‖₂={float(np.linalg.norm(delta)):.3f}" if l2 else f"‖δ‖∞={scale:.3f}"
        target = f" (→{name(int(s.target[j]))})" if int(s.target[j]) >= 0 else ""
        for i, (img, title) in enumerate(
            (
                (s.x[j], f"y={name(int(s.y[j]))}\n{name(int(s.pred[j]))} {s.conf[j]:.0%}"),
                (s.x_adv[j], f"{name(int(s.pred_adv[j]))} {s.conf_adv[j]:.0%}{target}"),
                (np.clip(amplified, 0, 1), size),
            )
        ):
            arr, cmap = _image(np.clip(img, 0, 1))
            ax = axes[i, j]
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            color = "black" if i != 1 or int(s.pred_adv[j]) == int(s.y[j]) else "red"
            ax.set_title(title, fontsize=8, color=color)
            ax.set_xticks([])
            ax.set_yticks([])
    for i, label in enumerate(("original", "adversarial", "perturbation\n(amplified)")):
        axes[i, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(f"{result.attack} at eps={format_eps(result.eps)}: robust accuracy {result.robust_accuracy:.1%}")
    return save_figure(fig, path)


def plot_accuracy_vs_eps(results: Sequence[AttackResult], path: str | Path) -> Path:
    """Write robust accuracy against eps, one line per attack (clean accuracy dashed).

    eps is shown in units of 1/255 when every result is an L∞ attack, else in [0, 1] pixel units.
    """
    if not results:
        raise RobustoodError("no attack results to plot")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    by_attack: dict[str, list[AttackResult]] = {}
    unit = 255.0 if all(r.norm == "linf" for r in results) else 1.0
    for r in results:
        by_attack.setdefault(r.attack, []).append(r)
    for label, rs in by_attack.items():
        rs = sorted(rs, key=lambda r: r.eps)
        ax.plot([r.eps * unit for r in rs], [r.robust_accuracy for r in rs], marker="o", label=label)
    ax.axhline(results[0].clean_accuracy, color="grey", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel("eps (× 1/255)" if unit == 255.0 else "eps (L2, pixel units)")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_attacks(
    results: Sequence[AttackResult], directory: str | Path, class_names: Sequence[str] | None = None
) -> list[Path]:
    """Write ``accuracy_vs_eps.png`` and, per attack × eps with kept inputs, ``<attack>_eps<eps>.png``."""
    directory = Path(directory)
    written = [plot_accuracy_vs_eps(results, directory / "accuracy_vs_eps.png")]
    for r in results:
        if r.samples is not None and len(r.samples.x):
            name = f"{_slug(r.attack)}_eps{_slug(format_eps(r.eps))}.png"
            written.append(plot_examples(r, directory / name, class_names))
    return written
