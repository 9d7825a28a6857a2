"""Each command's JSON output for a fixed seed is pinned (``tests/golden/``): refactors keep the numbers.

The pinned files were written by ``python tests/golden/commands.py``; a change meant to
change numbers regenerates them and says why. What is exact by construction is compared
exactly (the rows, their keys and order, labels, counts, budgets); measured numbers within
the bounds of ``tests/tolerance.py``, which a dependency release stays inside and a
regression does not. Timing columns are not compared.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import tolerance
from tolerance import differences

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))

from commands import COMMANDS, N, run, strip  # noqa: E402


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_output_is_pinned(name, one_thread_cache, monkeypatch):
    monkeypatch.setenv("ROBUSTOOD_CACHE_DIR", str(one_thread_cache))
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    got = strip(run(name))
    assert len(got) == len(expected), f"{name}: {len(got)} rows, pinned {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert sorted(g) == sorted(e), f"{name} row {i}: columns {sorted(set(g) ^ set(e))} differ"
        diff = differences(g, e, N)
        assert not diff, f"{name} row {i}: (got, pinned) {diff}"
        _within_the_budget(g)


def _within_the_budget(row: dict) -> None:
    """A norm-bounded attack never leaves its ball: exact, up to float32 rounding of the images."""
    attack, eps = row.get("attack", ""), row.get("eps")
    if not isinstance(eps, float) or attack.startswith("ddn"):  # DDN's eps is a cap on its search
        return
    for norm in ("linf", "l2"):
        if f"-{norm}" in attack:
            assert row[f"{norm}_max"] <= eps * (1 + 1e-6) + 1e-7, f"{attack} at {eps}: {norm}_max {row[f'{norm}_max']}"


# --------------------------------------------------------------------------- the tolerances themselves
PINNED = {
    "attack": "pgd-linf",
    "eps": 8 / 255,
    "eps_text": "8/255",
    "n": 200,
    "clean_accuracy": 0.975,
    "robust_accuracy": 0.5,
    "success_rate": 0.48717948717948717,
    "l2_mean": 0.2,
    "mean_iterations": 6.5,
    "mean_iterations_none": None,
}


@pytest.mark.parametrize(
    ("column", "inside", "outside"),
    [
        ("robust_accuracy", 0.5 + 3 / 200, 0.5 + 4 / 200),  # 3 of 200 inputs may move, not 4
        ("clean_accuracy", 0.975 - 3 / 200, 0.975 - 4 / 200),
        ("success_rate", 0.48717948717948717 + 3 / 195, 0.48717948717948717 + 4 / 195),  # of the 195 right
        ("l2_mean", 0.2 * 1.05, 0.2 * 1.06),
        ("mean_iterations", 6.5 * 1.1, 6.5 * 1.11),
    ],
)
def test_a_measured_number_may_move_by_its_kind_and_no_further(column, inside, outside):
    assert differences({**PINNED, column: inside}, PINNED, 200) == {}
    assert set(differences({**PINNED, column: outside}, PINNED, 200)) == {column}


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("eps", 8 / 255 + 1e-9),  # a budget is exact
        ("eps_text", "8/256"),
        ("attack", "fgsm-linf"),
        ("n", 199),
        ("mean_iterations_none", 0.0),  # None stays None
        ("robust_accuracy", None),
        ("robust_accuracy", math.nan),
    ],
)
def test_what_is_exact_by_construction_is_compared_exactly(column, value):
    assert set(differences({**PINNED, column: value}, PINNED, 200)) == {column}


def test_rankings_move_by_inputs_of_the_smaller_side():
    row = {"auroc": 0.9, "n_id": 200, "n_ood": 100, "fpr_at_95_tpr": 0.2, "detection_accuracy": 0.8}
    assert tolerance.allowance("auroc[msp|noise]", 0.9, row, 0) == pytest.approx(3 / 100)
    assert tolerance.allowance("fpr_at_95_tpr", 0.2, row, 0) == pytest.approx(3 / 200)
    assert tolerance.allowance("detection_accuracy", 0.8, row, 0) == pytest.approx(3 / 300)


def test_an_unknown_measured_column_is_an_error_not_a_pass():
    with pytest.raises(KeyError, match="no tolerance for column 'brand_new_metric'"):
        differences({"brand_new_metric": 0.5}, {"brand_new_metric": 0.5}, 200)


def test_both_nan_is_the_same_and_printed_rounding_widens_the_allowance():
    assert differences({"auroc": math.nan}, {"auroc": math.nan}, 200) == {}
    assert differences({"auroc": 0.9}, {"auroc": 0.9 + 3 / 200 + 0.0005}, 200, rounding=0.0005) == {}
    assert differences({"auroc": 0.9}, {"auroc": 0.9 + 3 / 200 + 0.0006}, 200, rounding=0.0005) != {}


def test_every_pinned_column_has_a_kind():
    for path in GOLDEN.glob("*.json"):
        for row in json.loads(path.read_text()):
            for column, value in row.items():
                if isinstance(value, float) and column not in tolerance.EXACT:
                    assert tolerance.metric(column) in tolerance.KINDS, f"{path.name}: {column}"
