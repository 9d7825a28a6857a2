"""Rendering rows of results: terminal table, markdown, CSV and JSON.

Computing and rendering are separate: commands and :func:`robustood.evaluate` produce
rows (plain dicts of strings and floats, snake_case keys), and these functions only
format them. JSON keeps full precision; the table formats round floats for reading.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .utils import atomic_path

__all__ = ["FORMATS", "render", "write_rendered"]

FORMATS = ("table", "markdown", "csv", "json")
Row = Mapping[str, Any]


def _columns(rows: Sequence[Row]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return value


def render(rows: Sequence[Row], fmt: str = "table", floatfmt: str = ".4f") -> str:
    """Render ``rows`` as ``table`` (terminal), ``markdown``, ``csv`` or ``json`` (array of objects)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    cols = _columns(rows)
    if fmt == "json":
        return json.dumps([{c: _plain(r.get(c)) for c in cols} for r in rows], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: ("" if _plain(r.get(c)) is None else _plain(r.get(c))) for c in cols})
        return buf.getvalue()
    table = [[_plain(r.get(c)) for c in cols] for r in rows]
    style = "github" if fmt == "markdown" else "simple"
    return tabulate(table, headers=cols, tablefmt=style, floatfmt=floatfmt, missingval="–") + "\n"


def write_rendered(text: str, path: str | os.PathLike) -> Path:
    """Write rendered output atomically (never a half-written file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
