"""A resumable on-disk record of finished evaluation units, and run provenance.

Each finished unit of work (one model's clean pass, one attack × eps, one detector × OOD
set …) is appended to a JSON-lines file as one line, flushed and synced before the next
unit starts. A crash half-way leaves the finished units on disk; a rerun with the same
store skips them. A torn last line (a crash mid-write) is ignored and recomputed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .distributed import broadcast_object
from .errors import EnvironmentFault, RobustoodError, WriteError
from .report import Row, _row
from .utils import is_writer

__all__ = ["ResultStore", "provenance"]


_RECORD_START = b'{"unit": '


class ResultStore:
    """Rows of finished units, keyed by a string that names the unit and its configuration.

    Under ``torchrun`` rank 0 alone reads and writes the file; :meth:`get` and :meth:`extra`
    give every rank rank 0's answer (so all ranks skip or compute a unit together, even on
    nodes that do not see the file), and :meth:`put` writes on rank 0 only.
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._done: dict[str, list[Row]] = {}
        self._extra: dict[str, dict[str, Any]] = {}
        if self.path is not None and is_writer():
            self._read(self.path)

    def _read(self, path: Path) -> None:
        if not str(path).strip() or path.is_dir():
            raise RobustoodError(f"the store {str(path)!r} must be a file name, not a directory")
        try:
            regular = path.is_file()
        except OSError:
            regular = False
        if not regular:
            return  # new, or a special file (/dev/null, a FIFO) that holds no finished units
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EnvironmentFault(f"cannot read the store {path}: {exc.strerror or exc}") from None
        skipped = 0
        for raw in data.splitlines():
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                self._done[rec["unit"]] = [_row(d) for d in rec["rows"]]
                if isinstance(rec.get("extra"), dict):
                    self._extra[rec["unit"]] = rec["extra"]
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                # a torn line from an interrupted write is expected and silently recomputed;
                # anything else (another program's file, damaged bytes) is worth a warning
                torn = raw.startswith(_RECORD_START) or _RECORD_START.startswith(raw)
                skipped += 0 if torn else 1
        if skipped:
            warnings.warn(
                f"the store {path} has {skipped} unreadable line(s) (not robustood results, or damaged); "
                "they are ignored and their units recomputed",
                stacklevel=3,
            )

    def get(self, unit: str) -> list[Row] | None:
        """The rows of a finished unit, or ``None`` (rank 0's answer on every rank)."""
        return broadcast_object(self._done.get(unit))

    def __contains__(self, unit: str) -> bool:
        return unit in self._done

    def __len__(self) -> int:
        return len(self._done)

    def extra(self, unit: str) -> dict[str, Any] | None:
        """What was stored with a unit's rows beyond them (e.g. per-sample verdicts), if anything
        (rank 0's answer on every rank)."""
        return broadcast_object(self._extra.get(unit))

    def put(self, unit: str, rows: Iterable[Row], extra: dict[str, Any] | None = None) -> list[Row]:
        """Record a finished unit (appended to the file at once), with ``extra`` data beside its rows;
        a failed write is a :class:`~robustood.errors.WriteError` that says the earlier units are kept."""
        rows = list(rows)
        self._done[unit] = rows
        if extra is not None:
            self._extra[unit] = extra
        if self.path is not None and is_writer():
            record: dict[str, Any] = {"unit": unit, "rows": [_jsonable(asdict(r)) for r in rows]}
            if extra is not None:
                record["extra"] = extra
            line = json.dumps(record)
            try:
                _append(self.path, (line + "\n").encode("utf-8"))
            except OSError as exc:
                kept = f"the {len(self._done) - 1} unit(s) finished before are kept in it; rerun to resume"
                raise WriteError(self.path, exc.strerror or str(exc), kept) from None
        return rows


def _append(path: Path, data: bytes) -> None:
    """Append one line, flushed and synced; a torn last line is ended first. Special files
    (``/dev/null``, a FIFO) are written as they are."""
    regular = not path.exists() or path.is_file()
    if regular:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+" if regular else "ab") as f:
        if regular and f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn last line: end it, so this unit starts a line
                f.write(b"\n")
        f.write(data)
        f.flush()
        if regular:
            os.fsync(f.fileno())


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in d.items()}


def provenance(config: dict[str, Any], seed: int, device: str) -> dict[str, Any]:
    """What a report records so it can be reproduced: configuration, seed, package versions, device."""
    versions = {"python": platform.python_version()}
    for dist in (
        "robustood",
        "torch",
        "torchvision",
        "adversarial-robustness-toolbox",
        "pytorch-ood",
        "scikit-learn",
        "numpy",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "config": config,
        "seed": seed,
        "device": device,
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
        "argv": list(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
