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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .utils import atomic_path, format_eps

__all__ = ["FORMATS", "Report", "Row", "render", "write_rendered"]

FORMATS = ("table", "markdown", "csv", "json")
RowLike = Mapping[str, Any]


def _columns(rows: Sequence[RowLike]) -> list[str]:
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


def render(rows: Sequence[RowLike], fmt: str = "table", floatfmt: str = ".4f") -> str:
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
    if fmt == "markdown":  # a bare "|" (as in ``auroc[maxlogit|noise]``) would split a cell
        cols = [_md_escape(c) for c in cols]
        table = [[_md_escape(v) if isinstance(v, str) else v for v in row] for row in table]
    style = "github" if fmt == "markdown" else "simple"
    return tabulate(table, headers=cols, tablefmt=style, floatfmt=floatfmt, missingval="–") + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_rendered(text: str, path: str | os.PathLike) -> Path:
    """Write rendered output atomically (never a half-written file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- tidy results


@dataclass(frozen=True)
class Row:
    """One cell of an evaluation: a metric's value for a model on an input set.

    ``input_set`` is ``test`` (clean ID data) or an OOD set's name; ``attack`` is ``""`` for
    clean inputs, else an attack label such as ``fgsm-linf``; ``eps`` is in [0, 1] pixel units
    (``None`` for clean); ``detector`` names the OOD or squeezing detector where one applies.
    """

    model: str
    input_set: str
    attack: str
    eps: float | None
    metric: str
    value: float
    detector: str = ""

    @property
    def column(self) -> str:
        """The column this cell takes in the comparison matrix (rows = models)."""
        if self.attack and self.detector and self.metric.startswith("robust_"):
            # a detector attack: robust_auroc[DETECTOR|SET@ATTACK@EPS]
            return f"{self.metric}[{self.detector}|{self.input_set}@{self.attack}@{format_eps(self.eps or 0.0)}]"
        where = []
        if self.attack:
            where.append(f"{self.attack}@{format_eps(self.eps or 0.0)}")
        if self.detector:
            where.append(self.detector)
        if self.input_set not in ("test", ""):
            where.append(self.input_set)
        return f"{self.metric}[{'|'.join(where)}]" if where else self.metric


@dataclass
class Report:
    """Tidy rows ``(model, input_set, attack, eps, metric, value, detector)`` plus provenance.

    Rendering is separate from computing: :meth:`table`, :meth:`to_markdown`, :meth:`to_csv`,
    :meth:`to_json` and :meth:`plot` only format :attr:`rows`; :meth:`from_json` and
    :meth:`from_csv` read them back with the same numbers.

    Per-sample outputs asked of :func:`~robustood.evaluate` (``keep=``, ``keep_scores=``)
    ride along, not serialised: :attr:`attacks` maps model → ``pgd-linf@8/255`` → the
    attack's :class:`~robustood.attacks.AttackResult` (with its kept samples), and
    :attr:`scores` maps model → input set (``"id"`` for the test split) → detector → scores;
    :attr:`attacked` maps model → input set → ``{"scores": {"DETECTOR@ATTACK@EPS": scores},
    "x": clean inputs, "x_adv": {"DETECTOR@ATTACK@EPS": attacked inputs}}`` of detector attacks.
    """

    rows: list[Row] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    scores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False, compare=False)
    attacked: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False, compare=False)

    # -- views
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.rows))

    def value(self, model: str, metric: str, **where: Any) -> float:
        """The one value matching ``model``, ``metric`` and the given fields (raises ``KeyError`` if none)."""
        hits = [
            r
            for r in self.rows
            if r.model == model and r.metric == metric and all(getattr(r, k) == v for k, v in where.items())
        ]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} rows match model={model!r} metric={metric!r} {where}")
        return hits[0].value

    def wide(self, metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The comparison matrix: one dict per model, one key per column (see :attr:`Row.column`).

        ``metrics`` keeps only those metrics' columns, grouped in the order given; ``None``
        keeps all, in the rows' order.
        """
        rows = self.rows
        if metrics is not None:
            order = {m: i for i, m in enumerate(metrics)}
            rows = sorted((r for r in rows if r.metric in order), key=lambda r: order[r.metric])
        out: dict[str, dict[str, Any]] = {m: {"model": m} for m in self.models()}
        for r in rows:
            out[r.model][r.column] = r.value
        return list(out.values())

    # -- renderers
    def table(self, fmt: str = "table", metrics: Sequence[str] | None = None) -> str:
        """The comparison matrix as ``table``, ``markdown``, ``csv`` or ``json`` (one object per model);
        ``metrics`` selects the metrics shown (default: all)."""
        return render(self.wide(metrics), fmt)

    def to_markdown(self, metrics: Sequence[str] | None = None) -> str:
        """The comparison matrix as a GitHub markdown table."""
        return self.table("markdown", metrics)

    def to_csv(self) -> str:
        """The tidy rows as CSV (full precision)."""
        return render([asdict(r) for r in self.rows], "csv")

    def to_json(self) -> str:
        """Tidy rows and provenance as one JSON object ``{"meta": …, "rows": […]}``."""
        rows = [{k: _plain(v) for k, v in asdict(r).items()} for r in self.rows]
        return json.dumps({"meta": self.meta, "rows": rows}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        return cls([_row(d) for d in data["rows"]], dict(data.get("meta", {})))

    @classmethod
    def from_csv(cls, text: str) -> Report:
        return cls([_row(d) for d in csv.DictReader(io.StringIO(text))])

    def plot(self, directory: str | os.PathLike) -> list[Path]:
        """Write the report's plots (accuracy vs eps, AUROC per detector) as PNGs; return their paths."""
        from .plots.report import plot_report

        return plot_report(self, Path(directory))


def _row(d: Mapping[str, Any]) -> Row:
    def num(v: Any) -> float | None:
        return None if v in (None, "") else float(v)

    value = num(d["value"])
    return Row(
        str(d["model"]),
        str(d["input_set"]),
        str(d.get("attack") or ""),
        num(d.get("eps")),
        str(d["metric"]),
        float("nan") if value is None else value,
        str(d.get("detector") or ""),
    )
