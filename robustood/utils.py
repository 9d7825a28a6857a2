"""Small shared helpers: epsilon parsing, seeding, device choice, cache dir, atomic writes.

Imports torch and NumPy only inside the functions that need them, so the command line
starts without them.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import stat
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
    "check_seed",
    "check_writable",
    "format_eps",
    "is_writer",
    "parse_eps",
    "parse_eps_list",
    "seeded",
    "select_device",
    "write_bytes",
    "write_target",
]

CACHE_ENV = "ROBUSTOOD_CACHE_DIR"


def parse_eps(text: str | float, what: str = "eps") -> float:
    """Parse one perturbation budget in pixel units of [0, 1] images.

    Accepts a decimal (``"0.03"``) or a fraction (``"2/255"``). Raises
    :class:`RobustoodError` for anything that is not a number in [0, 1], with a hint
    when the value looks like it was given in 0-255 pixel units. ``what`` names the value in
    messages (``"step size"``, ``"option step= of recipe 'adv:pgd:8/255:step=2'"``).

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
                f"invalid {what} {shown!r}: use a number in [0, 1] such as 0.03 or a fraction such as 2/255"
            ) from None
    if not math.isfinite(value):
        raise RobustoodError(f"{what} must be a finite number in [0, 1], got {shown}")
    if value < 0:
        raise RobustoodError(f"{what} must be in [0, 1], not negative, got {shown}")
    if value > 1:
        hint = f"; did you mean {shown}/255?" if value <= 255 else ""
        raise RobustoodError(f"{what} must be in [0, 1] (pixel units of [0, 1] images), got {shown}{hint}")
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


DEVICE_HELP = "use cpu, cuda, cuda:N, mps or auto"


def select_device(device: str | torch.device | None = None) -> torch.device:
    """Pick a device: the one asked for, else CUDA, then Apple MPS, then CPU.

    Raises :class:`RobustoodError` for a name torch does not know (``tpu``, ``cuda:abc``, ``""``),
    a device robustood cannot run on (``meta``) and a device this machine does not have.

    Under ``torchrun`` (``WORLD_SIZE`` > 1), ``cuda`` (and ``auto`` finding CUDA) is this
    process's GPU, the one of its ``LOCAL_RANK``: one GPU per process.
    """
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return _rank_gpu(torch.device("cuda"))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        text = device.strip()
        try:
            dev = torch.device(text.lower()) if text else None
        except (RuntimeError, ValueError, TypeError):
            dev = None
        if dev is None:
            raise RobustoodError(f"unknown device {device!r}; {DEVICE_HELP}")
    else:
        raise RobustoodError(f"device must be a name such as 'cpu' or 'cuda:0', got {device!r}")
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RobustoodError(f"device {str(dev)!r} was asked for but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RobustoodError(
                f"device {str(dev)!r} was asked for but this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})"
            )
        return _rank_gpu(dev)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise RobustoodError("device 'mps' was asked for but MPS is not available; use --device cpu")
        return dev
    available = getattr(getattr(torch, dev.type, None), "is_available", None)
    if dev.type != "meta" and callable(available) and available():
        return dev  # another accelerator torch supports here (e.g. xpu)
    why = "holds no data" if dev.type == "meta" else "is not supported or not available here"
    raise RobustoodError(f"device {str(dev)!r} {why}; {DEVICE_HELP}")


def _rank_gpu(dev: torch.device) -> torch.device:
    """``cuda`` as this ``torchrun`` process's GPU (``cuda:LOCAL_RANK``, wrapping around the
    node's GPUs); a device with an index, or a single process, as it is."""
    import torch

    if dev.index is not None:
        return dev
    try:
        size, local = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return dev
    return torch.device("cuda", local % torch.cuda.device_count()) if size > 1 else dev


SEED_MAX = 2**32 - 1


def check_seed(seed: object) -> int:
    """``seed`` as an int in [0, 2**32 − 1] (what NumPy and torch both accept); else :class:`RobustoodError`."""
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= SEED_MAX:
        raise RobustoodError(f"seed must be an integer from 0 to {SEED_MAX} (2**32 - 1), got {seed!r}")
    return int(seed)


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


_SPECIAL_DIRS = ("/dev/", "/proc/", "/sys/")


def _write_reason(exc: BaseException) -> str | None:
    """Why a write failed, when ``exc`` is a write failure (an ``OSError``, or the I/O error a
    writer such as ``torch.save`` or safetensors wraps in its own type); else ``None``."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    text = str(exc)
    low = text.lower()
    markers = (
        "no space left",
        "read-only file system",
        "permission denied",
        "ioerror",
        "failed writing",
        "file write",
        "inline_container",
    )
    if any(m in low for m in markers):
        return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return None


def _umask() -> int:
    """The process umask: read from ``/proc`` where it is shown (no change, so thread-safe), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_target(target: str | os.PathLike) -> tuple[Path, bool]:
    """Where a write of ``target`` goes and whether it goes there directly.

    Special files (character devices such as ``/dev/null`` or ``/dev/full``, FIFOs, ``/dev/stdout``,
    process substitutions ``/dev/fd/N``) are written directly: renaming a file onto them would
    replace the device. A symbolic link is followed, so its target is written and the link kept.
    Raises :class:`~robustood.errors.WriteError` for an empty name or a directory.
    """
    from .errors import WriteError

    text = os.fspath(target)
    if not str(text).strip():
        raise WriteError(repr(text), "empty file name; give a file name")
    path = Path(text).expanduser()
    try:
        st = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise WriteError(path, _write_reason(exc) or str(exc)) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise WriteError(path, "it is a directory; give a file name")
    absolute = os.path.abspath(path)
    if (st is not None and not stat.S_ISREG(st.st_mode)) or absolute.startswith(_SPECIAL_DIRS):
        return path, True
    real = Path(os.path.realpath(path))
    if str(real).startswith(_SPECIAL_DIRS):
        return path, True
    return real, False


def is_writer() -> bool:
    """Whether this process writes files: always, except the ranks other than 0 of a
    ``torchrun`` job (read from ``WORLD_SIZE`` and ``RANK``), where rank 0 alone writes."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def check_writable(target: str | os.PathLike, *, directory: bool = False, append: bool = False) -> None:
    """Fail early, before any work, when ``target`` (a file, or with ``directory`` a folder to
    write files into; with ``append`` a file appended to in place, such as a result store)
    cannot be written: an empty name, a directory given for a file, a file
    given for a folder, a read-only file system, no permission. Nothing is left behind.

    Raises :class:`RobustoodError` for an empty name or a folder given for a file (and the
    reverse), :class:`~robustood.errors.WriteError` for the rest.
    """
    from .errors import WriteError

    text = os.fspath(target)
    if not str(text).strip():
        raise RobustoodError("an output path is empty; give a file or folder name")
    if not is_writer():
        return
    path = Path(text).expanduser()
    if directory:
        if path.exists() and not path.is_dir():
            raise RobustoodError(f"{str(path)!r} is a file, not a folder to write files into")
        probe = path
    else:
        if path.is_dir():
            empty = " (an empty name?)" if str(path) == "." else ""
            raise RobustoodError(f"output {str(path)!r} is a directory{empty}; give a file name")
        real, direct = write_target(path)
        if direct:
            return
        if append and real.is_file():
            try:
                with open(real, "ab"):
                    pass
            except OSError as exc:
                raise WriteError(path, _write_reason(exc) or str(exc)) from None
            return
        probe = real.parent
    while not probe.exists():  # the nearest folder that exists is where new folders would be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise WriteError(path, f"{probe} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".robustood-check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WriteError(path, _write_reason(exc) or str(exc)) from None


@contextlib.contextmanager
def _reported_as(shown: Path) -> Iterator[None]:
    """Re-raise a failed write in the block as one :class:`~robustood.errors.WriteError` naming
    ``shown``; errors that are not about writing pass through unchanged."""
    from .errors import WriteError

    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        reason = _write_reason(exc)
        if reason is None:
            raise
        raise WriteError(shown, reason) from None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield the path a writer should write ``target`` through; on success it becomes ``target``.

    A regular file (new or existing, also through a symbolic link) is written to a temporary
    file next to it and renamed onto it only on success, so an interrupted or failed write
    never leaves a half-written file behind; a new file gets the mode the umask allows and an
    existing one keeps its mode. Special files (``/dev/null``, ``/dev/stdout``, a FIFO) are
    written directly (see :func:`write_target`). Every failure (full disk, read-only file
    system, no permission, a directory, an empty name) is raised as one
    :class:`~robustood.errors.WriteError` naming the file and the reason.

    On a ``torchrun`` rank other than 0 (:func:`is_writer`) the path is a scratch file that
    is deleted afterwards: rank 0 alone writes.
    """
    from .errors import WriteError

    if not is_writer():
        with tempfile.TemporaryDirectory(prefix="robustood-rank-") as scratch:
            yield Path(scratch) / (Path(os.fspath(target)).name or "out")
        return
    real, direct = write_target(target)
    shown = Path(os.fspath(target)).expanduser()
    if direct:
        with _reported_as(shown):
            yield real
        return
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(os.stat(real).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
        os.close(fd)
    except OSError as exc:
        raise WriteError(shown, _write_reason(exc) or str(exc)) from None
    tmp_path = Path(tmp)
    try:
        with _reported_as(shown):
            yield tmp_path
            os.chmod(tmp_path, mode)
            os.replace(tmp_path, real)
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` through :func:`atomic_path` (special files directly)."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(target)
