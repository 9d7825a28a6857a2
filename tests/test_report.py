from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest

from robustood.report import render, write_rendered

ROWS = [
    {"model": "a", "eps": "2/255", "accuracy": 0.912345678, "auroc": float("nan")},
    {"model": "b", "eps": "0", "accuracy": 1.0, "note": "extra column"},
]


def shown_as(text: str, value: float) -> bool:
    """Whether a table cell ``text`` shows ``value`` rounded to the cell's decimals."""
    decimals = len(text.partition(".")[2])
    return f"{value:.{decimals}f}" == text


def test_json_is_an_array_of_row_objects_with_full_precision():
    data = json.loads(render(ROWS, "json"))
    assert [set(d) for d in data] == [{"model", "eps", "accuracy", "auroc", "note"}] * 2
    assert data[0]["accuracy"] == 0.912345678 and data[0]["auroc"] is None and data[1]["auroc"] is None


def test_csv_round_trips_the_numbers():
    rows = list(csv.DictReader(io.StringIO(render(ROWS, "csv"))))
    assert float(rows[0]["accuracy"]) == 0.912345678 and rows[0]["auroc"] == "" and rows[1]["note"] == "extra column"


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_tables_show_the_same_numbers_rounded(fmt):
    text = render(ROWS, fmt)
    assert "0.912" in text and "1.000" in text and "extra column" in text
    assert text.splitlines()[0].replace("|", " ").split()[0] == "model"
    if fmt == "markdown":
        assert all(line.startswith("|") for line in text.strip().splitlines())


def markdown_cells(text: str) -> list[list[str]]:
    """The cells of a GitHub markdown table, split on unescaped pipes, separator line dropped."""
    lines = [line for line in text.strip().splitlines() if not set(line) <= set("|-: ")]
    return [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_markdown_escapes_pipes_in_column_names_and_cells():
    rows = [{"model": "a|b", "auroc[maxlogit|noise]": 0.5, "auroc[msp|noise]": 0.25}]
    cells = markdown_cells(render(rows, "markdown"))
    assert cells == [["model", "auroc[maxlogit|noise]", "auroc[msp|noise]"], ["a|b", "0.500", "0.250"]]


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown format"):
        render(ROWS, "xml")


def test_write_rendered_is_atomic(tmp_path):
    path = write_rendered(render(ROWS, "json"), tmp_path / "sub" / "r.json")
    assert json.loads(path.read_text())[1]["model"] == "b"
    assert math.isclose(json.loads(path.read_text())[0]["accuracy"], 0.912345678)
