"""Plots (matplotlib, headless): one module per family, all written atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows

from matplotlib.figure import Figure

from ..utils import atomic_path

__all__ = ["CHANGED", "UNCHANGED", "annotate_bars", "output_dir", "save_figure", "title", "zoom"]

#: Colours every plot uses for a prediction the attack changed / left alone.
CHANGED, UNCHANGED = "tab:red", "black"


def title(what: str, *, model: str | None = None, dataset: str | None = None, budget: str | None = None) -> str:
    """A plot title naming what is shown, the model, the dataset and the budget where known:
    ``Robust accuracy · small_cnn on digits · eps 8/255``."""
    parts = [what]
    if model or dataset:
        parts.append(" on ".join(p for p in (model, dataset) if p))
    if budget:
        parts.append(f"eps {budget}")
    return " · ".join(parts)


def zoom(values: list[float], *, lo: float = 0.0, hi: float = 1.0, small: float = 0.2) -> tuple[float, float]:
    """Y-axis limits for values in [lo, hi]: the full range, or zoomed around the values when they
    differ by less than ``small`` (0.977 vs 0.985 is invisible on a 0–1 axis)."""
    finite = [v for v in values if v == v]
    if not finite:
        return lo, hi + 0.02 * (hi - lo)
    top, bottom = max(finite), min(finite)
    if top - bottom >= small:
        return lo, hi + 0.02 * (hi - lo)
    margin = max(0.25 * (top - bottom), 0.01 * (hi - lo))
    return max(lo, bottom - 3 * margin), min(hi + 0.02 * (hi - lo), top + 2 * margin)


def annotate_bars(ax, bars, fmt: str = "{:.3f}") -> None:
    """Write each bar's value above it."""
    ax.bar_label(bars, labels=[fmt.format(b.get_height()) for b in bars], fontsize=7, padding=2)


def output_dir(directory: str | os.PathLike) -> Path:
    """``directory``, created if needed; a file in the way or a failed ``mkdir`` is one
    :class:`~robustood.errors.WriteError` naming the folder."""
    from ..errors import WriteError

    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(path, "it is a file, not a folder for plots") from None
    except OSError as exc:
        raise WriteError(path, exc.strerror or str(exc)) from None
    return path


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
