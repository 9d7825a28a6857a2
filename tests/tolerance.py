"""How far a measured number may move between two runs that differ only in their dependencies.

A new torch, NumPy or scikit-learn build sums in another order, so the model trained from the
same seed ends a little elsewhere and every number measured on it moves a little. What is
exact by construction does not move and is compared exactly: the rows, their keys and order,
labels, counts, budgets (``eps``), ``None``. A measured number may move by a bound set by the
kind of quantity it is, loose enough for a dependency release and tight enough that a real
regression (an attack that stops projecting, a detector scoring the wrong side, a metric over
the wrong inputs) still fails:

* a **fraction of inputs** (accuracies, success, detection and false-positive rates) by at most
  :data:`INPUTS` inputs of its denominator: ``INPUTS / d``;
* a **ranking metric** (AUROC, AUPR) by as much as :data:`INPUTS` inputs of the smaller side moving
  anywhere in the ranking: ``INPUTS / min(n_id, n_ood)``;
* a **mean over inputs** (perturbation norms, confidence drop, a detector's threshold) by
  :data:`RELATIVE` of itself;
* a **mean iteration count** by :data:`ITERATIONS` of itself.

``tests/test_golden.py`` compares each command's rows with the pinned ones this way and
``tests/test_docs.py`` the numbers the docs print. A new metric has to be given a kind in
:data:`KINDS` before either test passes: an unknown float column is an error, never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Inputs a fraction or a ranking may move by (on 200 inputs: 0.015).
INPUTS = 3
#: Relative change allowed to a mean over inputs (observed across torch releases: < 2 %).
RELATIVE = 0.05
#: Relative change allowed to a mean iteration count (observed: < 1 %).
ITERATIONS = 0.10

FRACTION, RANKING, MEAN, COUNT = "fraction", "ranking", "mean", "iterations"

#: The kind of every measured column, by its metric name (a compare column's name up to ``[``).
KINDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "accuracy",
            "clean_accuracy",
            "id_accuracy",
            "robust_accuracy",
            "squeezed_clean_accuracy",
            "squeezed_robust_accuracy",
            "success_rate",
            "detection_rate",
            "detection_rate_successful",
            "false_positive_rate",
            "misclassified_undetected",
            "fpr_at_95_tpr",
            "detection_accuracy",
        ),
        FRACTION,
    ),
    **dict.fromkeys(("auroc", "aupr_in", "aupr_out"), RANKING),
    **dict.fromkeys(("confidence_drop", "l2_mean", "l2_max", "linf_mean", "linf_max", "threshold"), MEAN),
    "mean_iterations": COUNT,
}

#: Columns that are exact by construction even though they hold floats.
EXACT = frozenset({"eps"})


def metric(column: str) -> str:
    """The metric a column holds: ``robust_accuracy[fgsm-linf@8/255]`` → ``robust_accuracy``."""
    return column.split("[", 1)[0]


def denominator(column: str, row: Mapping, n: int) -> float:
    """The number of inputs the fraction in ``column`` is taken over, read off the (pinned) row.

    ``n`` is the number of inputs the command evaluated (``--limit``); a row's own ``n``,
    ``n_id`` and ``n_ood`` win over it.
    """
    n = row.get("n") or n
    n_id, n_ood = row.get("n_id") or n, row.get("n_ood") or n
    name = metric(column)
    if name in ("auroc", "aupr_in", "aupr_out"):
        return min(n_id, n_ood)
    if name == "fpr_at_95_tpr":
        return n_id  # the ID inputs above the threshold that keeps 95 % of the OOD ones
    if name == "detection_accuracy":
        return n_id + n_ood
    clean = row.get("clean_accuracy")
    if name == "success_rate" and clean is not None:
        return max(1.0, round(n * clean))  # over the inputs the model got right
    if name == "detection_rate_successful" and clean is not None and row.get("robust_accuracy") is not None:
        return max(1.0, round(n * (clean - row["robust_accuracy"])))  # over the attack's successes
    return n


def allowance(column: str, pinned: float, row: Mapping, n: int) -> float:
    """How far a rerun's value of ``column`` may lie from the ``pinned`` one (absolute)."""
    name = metric(column)
    if name not in KINDS:
        raise KeyError(f"no tolerance for column {column!r}: give its metric a kind in tests/tolerance.py KINDS")
    kind = KINDS[name]
    if kind in (FRACTION, RANKING):
        return INPUTS / denominator(column, row, n)
    return (RELATIVE if kind == MEAN else ITERATIONS) * abs(pinned)


def differences(
    got: Mapping, pinned: Mapping, n: int, *, rounding: float | Mapping[str, float] = 0.0
) -> dict[str, tuple]:
    """The columns of one row whose rerun value ``got`` lies outside its allowance of ``pinned``.

    Non-float values (labels, counts, ``None``) and :data:`EXACT` columns must be equal;
    ``rounding`` (one number, or one per column) widens an allowance by the precision the
    pinned number was printed at: half its last digit, for numbers read back from a table.
    """
    out = {}
    for key, want in pinned.items():
        printed = rounding.get(key, 0.0) if isinstance(rounding, Mapping) else rounding
        have = got.get(key)
        if isinstance(want, bool) or not isinstance(want, float) or key in EXACT:
            same = have == want or _both_nan(have, want)
        elif not isinstance(have, (int, float)) or isinstance(have, bool):
            same = False
        elif math.isnan(want) or math.isnan(have):
            same = _both_nan(have, want)
        else:
            same = abs(have - want) <= allowance(key, want, pinned, n) + printed + 1e-12
        if not same:
            out[key] = (have, want)
    return out


def _both_nan(a, b) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
