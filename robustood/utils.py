"""Small shared helpers: epsilon parsing, seeding, device choice, cache dir, atomic writes.

Imports torch and NumPy only inside the functions that need them, so the command line
starts without them.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RobustoodError

if TYPE_CHECKING:
    import torch

__all__ = [
    "atomic_path",
    "cache_dir",
    "format_eps",
    "parse_eps",
    "parse_eps_list",
    "seeded",
    "select_device",
]

CACHE_ENV = "ROBUSTOOD_CACHE_DIR"


def parse_eps(text: str | float) -> float:
    """Parse one perturbation budget in pixel units of [0, 1] images.

    Accepts a decimal (``"0.03"``) or a fraction (``"2/255"``). Raises
    :class:`RobustoodError` for anything that is not a number in [0, 1], with a hint
    when the value looks like it was given in 0-255 pixel units.

    >>> parse_eps("2/255") == 2 / 255
    True
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        shown = repr(text)
    else:
        shown = str(text).strip()
        try:
            value = float(Fraction(shown))
        except (ValueError, ZeroDivisionError):
            raise RobustoodError(
                f"invalid eps {shown!r}: use a number in [0, 1] such as 0.03 or a fraction such as 2/255"
            ) from None
    if not math.isfinite(value) or value < 0:
        raise RobustoodError(f"eps must be in [0, 1], got {shown}")
    if value > 1:
        hint = f"; did you mean {shown}/255?" if value <= 255 else ""
        raise RobustoodError(f"eps must be in [0, 1] (pixel units of [0, 1] images), got {shown}{hint}")
    return value


def parse_eps_list(text: str) -> list[float]:
    """Parse a comma-separated list of budgets, e.g. ``"0,1/255,2/255"``; order kept, duplicates dropped."""
    parts = [p for p in str(text).split(",")]
    if not parts or any(not p.strip() for p in parts):
        raise RobustoodError(f"invalid eps list {text!r}: use comma-separated values such as 0,1/255,2/255")
    values: list[float] = []
    for part in parts:
        value = parse_eps(part)
        if value not in values:
            values.append(value)
    return values


def format_eps(eps: float) -> str:
    """Show a budget the way people write it: ``2/255`` for a multiple of 1/255, else a decimal.

    Budgets with at most two decimals stay decimals (``0.2``, ``0.5``, ``1``: typical L2
    budgets), although 0.2 is also 51/255.
    """
    if eps == 0:
        return "0"
    k = eps * 255
    short = abs(eps * 100 - round(eps * 100)) < 1e-6
    if abs(k - round(k)) < 1e-6 and round(k) > 0 and not short:
        return f"{round(k)}/255"
    return f"{eps:.4g}"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's generators for the block, and restore their states after it.

    Code in the block (weight initialisation, dropout, a shuffle inside ART) repeats for a
    given ``seed``; the caller's random streams are left as they were, so the library never
    reseeds a user's global generators.
    """
    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def select_device(device: str | torch.device | None = None) -> torch.device:
    """Pick a device: the one asked for, else CUDA, then Apple MPS, then CPU."""
    import torch

    if device is not None and str(device) != "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RobustoodError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RobustoodError("device 'mps' was asked for but MPS is not available; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where trained default models are kept: ``override``, else ``$ROBUSTOOD_CACHE_DIR``,
    else ``~/.cache/robustood``."""
    if override is not None:
        path = Path(override)
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "robustood"
    return path.expanduser()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` only on success.

    An interrupted or failed write therefore never leaves a half-written file behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
