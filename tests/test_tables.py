"""Tables that fit a terminal: sensible precision, wrapped blocks, the transposed comparison
matrix, column selection, and the pandas / markdown views of a report."""

from __future__ import annotations

import sys

import pytest

from robustood.report import Report, Row, column_decimals, match_columns, render, transpose_wide

from test_report import markdown_cells

WIDE = [
    {"attack": a, "eps": "8/255", **{f"metric_number_{i}": 0.1 * i + j / 7 for i in range(12)}}
    for j, a in enumerate(("fgsm-linf", "pgd-linf"))
]


@pytest.mark.parametrize(
    ("values", "decimals"),
    [([0.975, 0.5], 3), ([0.0078, 0.031], 4), ([12.5, 3.0], 2), ([6662.1, 1108.7], 0), ([float("nan")], 3)],
)
def test_column_decimals(values, decimals):
    assert column_decimals(values) == decimals


def test_wide_table_wraps_into_blocks_that_fit_and_repeat_the_keys():
    text = render(WIDE, "table", width=80, keys=("attack", "eps"))
    assert max(map(len, text.splitlines())) <= 80
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert len(blocks) > 1
    for block in blocks:
        header = block.splitlines()[0].split()
        assert header[:2] == ["attack", "eps"]
        assert [ln.split()[0] for ln in block.splitlines()[2:]] == ["fgsm-linf", "pgd-linf"]
    shown = [h for b in blocks for h in b.splitlines()[0].split()[2:]]
    assert shown == [f"metric_number_{i}" for i in range(12)]  # every column once, in order


def test_narrow_enough_table_is_not_wrapped():
    assert "\n\n" not in render(WIDE[:1], "table", width=1000)


def _report():
    rows = []
    for model, base in (("plain", 0.9), ("adv:fgsm:8/255", 0.95)):
        rows.append(Row(model, "test", "", None, "accuracy", base))
        for eps in (2 / 255, 4 / 255, 8 / 255, 16 / 255):
            for attack in ("fgsm-linf", "pgd-linf"):
                rows.append(Row(model, "test", attack, eps, "robust_accuracy", base - eps))
        for det in ("msp", "maxlogit"):
            rows.append(Row(model, "noise", "", None, "auroc", 0.97, det))
    return Report(rows)


def test_compare_matrix_is_transposed_when_too_wide():
    report = _report()
    text = report.table(width=100)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[0].split() == ["metric", "at", "plain", "adv:fgsm:8/255"]
    assert any(ln.split()[:2] == ["robust_accuracy", "pgd-linf@16/255"] for ln in lines)
    rows = transpose_wide(report.wide())
    assert rows[0] == {"metric": "accuracy", "at": "", "plain": 0.9, "adv:fgsm:8/255": 0.95}


def test_to_markdown_columns_picks_metrics_or_single_columns():
    report = _report()
    cells = markdown_cells(report.to_markdown(columns=["accuracy", "auroc[msp|noise]"]))
    assert cells == [
        ["model", "accuracy", "auroc[msp|noise]"],
        ["plain", "0.900", "0.970"],
        ["adv:fgsm:8/255", "0.950", "0.970"],
    ]
    header = markdown_cells(report.to_markdown(columns=["robust_accuracy"]))[0]
    assert len(header) == 1 + 8 and all(h.startswith("robust_accuracy[") for h in header[1:])
    with pytest.raises(ValueError, match="no column 'auroc\\[knn'"):
        match_columns(list(report.wide()[0]), ["auroc[knn"])


def test_to_pandas_is_the_tidy_rows():
    pd = pytest.importorskip("pandas")
    df = _report().to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["model", "input_set", "attack", "eps", "metric", "value", "detector"]
    assert len(df) == len(_report().rows)


def test_to_pandas_without_pandas_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ModuleNotFoundError, match="pip install pandas"):
        _report().to_pandas()


def test_cli_columns_option(runner, checkpoint):
    from robustood.cli import main

    args = ["attack", "--model", str(checkpoint), "--attack", "fgsm", "--eps", "8/255", "--limit", "16", "--quiet"]
    result = runner.invoke(main, [*args, "--columns", "robust_accuracy,linf_max"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["attack", "eps", "robust_accuracy", "linf_max"]
    bad = runner.invoke(main, [*args, "--columns", "nope"])
    assert bad.exit_code == 2 and "no column 'nope'" in bad.output


def test_cli_attack_table_fits_80_columns(checkpoint):
    from click.testing import CliRunner

    from robustood.cli import main

    args = ["attack", "--model", str(checkpoint), "--eps", "2/255,8/255", "--limit", "16", "--quiet"]
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, args)
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80
    assert "images_per_second" in result.stdout  # wrapped, not cut
