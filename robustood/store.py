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
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .report import Row, _row

__all__ = ["ResultStore", "provenance"]


class ResultStore:
    """Rows of finished units, keyed by a string that names the unit and its configuration."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self._done: dict[str, list[Row]] = {}
        self._extra: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self._done[rec["unit"]] = [_row(d) for d in rec["rows"]]
                    if isinstance(rec.get("extra"), dict):
                        self._extra[rec["unit"]] = rec["extra"]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a torn line from an interrupted write: that unit is recomputed

    def get(self, unit: str) -> list[Row] | None:
        return self._done.get(unit)

    def __contains__(self, unit: str) -> bool:
        return unit in self._done

    def __len__(self) -> int:
        return len(self._done)

    def extra(self, unit: str) -> dict[str, Any] | None:
        """What was stored with a unit's rows beyond them (e.g. per-sample verdicts), if anything."""
        return self._extra.get(unit)

    def put(self, unit: str, rows: Iterable[Row], extra: dict[str, Any] | None = None) -> list[Row]:
        rows = list(rows)
        self._done[unit] = rows
        if extra is not None:
            self._extra[unit] = extra
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record: dict[str, Any] = {"unit": unit, "rows": [_jsonable(asdict(r)) for r in rows]}
            if extra is not None:
                record["extra"] = extra
            line = json.dumps(record)
            with open(self.path, "ab+") as f:
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # a torn last line: end it, so this unit starts a line
                        f.write(b"\n")
                f.write((line + "\n").encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        return rows


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
