"""Plots (matplotlib, headless): one module per family, all written atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows

from matplotlib.figure import Figure

from ..utils import atomic_path

__all__ = ["output_dir", "save_figure"]


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
