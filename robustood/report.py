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
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .utils import atomic_path, format_eps

__all__ = [
    "FORMATS",
    "Report",
    "Row",
    "column_decimals",
    "match_columns",
    "render",
    "select_columns",
    "transpose_wide",
    "write_rendered",
]

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


def render(
    rows: Sequence[RowLike],
    fmt: str = "table",
    floatfmt: str | None = None,
    *,
    width: int | None = None,
    keys: Sequence[str] = (),
    transpose: bool = False,
) -> str:
    """Render ``rows`` as ``table`` (terminal), ``markdown``, ``csv`` or ``json`` (array of objects).

    ``json`` and ``csv`` keep full precision. ``table`` and ``markdown`` round each float column
    to a precision that suits its values (:func:`column_decimals`; ``floatfmt`` forces one
    format). A ``table`` wider than ``width`` characters (default: the terminal's width) is
    wrapped into blocks of columns that fit, each block repeating the ``keys`` columns that
    name a row (``model``, ``attack`` …); with ``transpose`` (a comparison matrix from
    :meth:`Report.wide`) it is shown instead one metric per line and one column per model
    (:func:`transpose_wide`).
    """
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
    cells: dict[str, list[str]] = {}
    for c in cols:
        values = [_plain(r.get(c)) for r in rows]
        spec = floatfmt or f".{column_decimals(values)}f"
        cells[c] = [_cell(v, spec) for v in values]
    if fmt == "markdown":  # a bare "|" (as in ``auroc[maxlogit|noise]``) would split a cell
        return _tabulate({_md_escape(c): [_md_escape(v) for v in vs] for c, vs in cells.items()}, "github")
    width = width if width is not None else shutil.get_terminal_size((100, 24)).columns
    text = _tabulate(cells, "simple")
    if max(map(len, text.splitlines()), default=0) <= width or len(cols) <= 1:
        return text
    if transpose and "model" in cols:
        return render(transpose_wide(rows), fmt, floatfmt, width=width, keys=("metric", "at"))
    return "\n".join(_tabulate({c: cells[c] for c in block}, "simple") for block in _blocks(cells, keys, width))


def transpose_wide(rows: Sequence[RowLike]) -> list[dict[str, Any]]:
    """A comparison matrix (one dict per model, columns ``metric[where]``) turned on its side:
    one dict per column with ``metric``, ``at`` (attack@eps, detector, input set) and one key
    per model, which stays narrow however many budgets and detectors there are."""
    models = [str(r.get("model")) for r in rows]
    out: list[dict[str, Any]] = []
    for col in _columns(rows):
        if col == "model":
            continue
        metric, _, where = col.partition("[")
        out.append(
            {"metric": metric, "at": where.rstrip("]"), **{m: r.get(col) for m, r in zip(models, rows, strict=True)}}
        )
    return out


def column_decimals(values: Sequence[Any]) -> int:
    """Decimals that show a float column sensibly: 3 for fractions (0.975), 4 when some value is
    below 0.01 (an L∞ norm of 2/255 = 0.0078), 2 up to 100, none for large numbers (images per second)."""
    nums = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v)]
    if not nums:
        return 3
    top = max(nums)
    if top >= 100:
        return 0
    if top >= 10:
        return 2
    small = [v for v in nums if 0 < v < 0.01]
    return 4 if small else 3


def _cell(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return format(value, spec)


def _tabulate(cells: Mapping[str, Sequence[str]], style: str) -> str:
    headers = list(cells)
    n = max((len(v) for v in cells.values()), default=0)
    numeric = [all(_numeric(v) for v in cells[c]) for c in headers]
    table = [[cells[c][i] for c in headers] for i in range(n)]
    align = ["right" if num else "left" for num in numeric]
    return tabulate(table, headers=headers, tablefmt=style, disable_numparse=True, colalign=align) + "\n"


def _numeric(text: str) -> bool:
    if text in ("–", "nan"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _blocks(cells: Mapping[str, Sequence[str]], keys: Sequence[str], width: int) -> list[list[str]]:
    """Columns in blocks no wider than ``width`` (each block starts with the ``keys`` columns)."""

    def w(c: str) -> int:
        return max([len(c), *map(len, cells[c])]) + 2

    head = [c for c in cells if c in keys]
    rest = [c for c in cells if c not in keys]
    blocks: list[list[str]] = []
    current: list[str] = []
    used = sum(map(w, head))
    for c in rest:
        if current and used + w(c) > width:
            blocks.append(head + current)
            current, used = [], sum(map(w, head))
        current.append(c)
        used += w(c)
    if current or not blocks:
        blocks.append(head + current)
    return blocks


def match_columns(available: Sequence[str], columns: Sequence[str]) -> list[str]:
    """The ``available`` columns that ``columns`` name, in the order asked.

    A name picks the column of that name or, in a comparison matrix, every column of that
    metric (``robust_accuracy`` picks ``robust_accuracy[pgd-linf@8/255]`` …). Raises
    ``ValueError`` naming the available columns for a name that matches none.
    """
    chosen: list[str] = []
    for name in columns:
        hits = [c for c in available if c == name or c.startswith(f"{name}[")]
        if not hits:
            raise ValueError(f"no column {name!r}; available: {', '.join(available)}")
        chosen.extend(c for c in hits if c not in chosen)
    return chosen


def select_columns(rows: Sequence[RowLike], columns: Sequence[str], keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows with the ``keys`` columns that some row has, then the ``columns`` asked for
    (see :func:`match_columns`)."""
    available = _columns(rows)
    chosen = [k for k in keys if k in available]
    chosen += [c for c in match_columns(available, columns) if c not in chosen]
    return [{c: r.get(c) for c in chosen} for r in rows]


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
    def table(
        self,
        fmt: str = "table",
        metrics: Sequence[str] | None = None,
        *,
        columns: Sequence[str] | None = None,
        width: int | None = None,
    ) -> str:
        """The comparison matrix as ``table``, ``markdown``, ``csv`` or ``json`` (one object per model).

        ``metrics`` selects metrics (default: all); ``columns`` selects metrics or single columns
        (``robust_accuracy``, ``auroc[msp|noise]``, see :func:`match_columns`). A ``table``
        wider than ``width`` (default: the terminal) is shown one metric per line instead.
        """
        rows = self.wide(metrics)
        if columns:
            rows = select_columns(rows, columns, keys=("model",))
        return render(rows, fmt, width=width, keys=("model",), transpose=True)

    def to_markdown(self, metrics: Sequence[str] | None = None, *, columns: Sequence[str] | None = None) -> str:
        """The comparison matrix as a GitHub markdown table, e.g.
        ``report.to_markdown(columns=["accuracy", "robust_accuracy", "auroc"])``."""
        return self.table("markdown", metrics, columns=columns)

    def to_pandas(self) -> Any:
        """The tidy rows as a ``pandas.DataFrame`` (one row per cell; pivot it for a matrix:
        ``df.pivot_table(index="model", columns=["metric", "attack", "eps"], values="value")``).

        Needs pandas, which robustood does not install: ``pip install pandas``.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ModuleNotFoundError(
                "Report.to_pandas() needs pandas, which robustood does not install: pip install pandas"
            ) from None
        columns = [f.name for f in fields(Row)]
        return pd.DataFrame([[getattr(r, c) for c in columns] for r in self.rows], columns=columns)

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

    def plot(self, directory: str | os.PathLike, *, dataset: str | None = None) -> list[Path]:
        """Write the report's plots (robust accuracy vs eps, AUROC per detector) as PNGs; return their
        paths. ``dataset`` names the data in the titles (default: the provenance's)."""
        from .plots.report import plot_report

        return plot_report(self, Path(directory), dataset=dataset)


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
