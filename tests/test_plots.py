"""What the plots draw (titles, axis limits, artists), from hand-made results: no pixels compared."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.container import BarContainer

from robustood.attacks.metrics import AttackResult, AttackSamples
from robustood.detectors.run import OODResult
from robustood.plots import CHANGED, UNCHANGED, zoom
from robustood.plots.attacks import accuracy_figure, examples_figure, flipped, plot_attacks
from robustood.plots.defenses import squeezing_figure
from robustood.plots.ood import curves_figures, histogram_figure
from robustood.plots.report import accuracy_figure as report_accuracy
from robustood.plots.report import auroc_figure
from robustood.report import Report, Row


def _result(attack="pgd-linf", eps=8 / 255, robust=0.5, clean=0.9, samples=None, norm="linf"):
    nan = float("nan")
    return AttackResult(
        attack, attack.split("-")[0], norm, eps, "", "native", "fp32", 10, clean, robust, nan, nan, nan,
        nan, nan, nan, nan, 1.0, 10.0, samples,
    )  # fmt: skip


def _samples():
    """Six inputs: 0, 2, 4 flipped (correct → wrong); 1 correct and kept; 3 wrong before and after; 5 wrong → right."""
    n = 6
    x = np.zeros((n, 1, 4, 4), np.float32)
    y = np.array([0, 1, 2, 3, 4, 5])
    pred = np.array([0, 1, 2, 9, 4, 9])
    pred_adv = np.array([7, 1, 7, 8, 7, 5])
    conf = np.full(n, 0.9, np.float32)
    return AttackSamples(x, y, x + 0.01, pred, conf, pred_adv, conf, np.full(n, -1))


def test_flipped_are_correct_then_wrong():
    assert flipped(_result(samples=_samples())).tolist() == [0, 2, 4]


def test_example_grid_shows_flipped_inputs_titled_so_with_consistent_colours():
    fig = examples_figure(_result(samples=_samples()), model="small_cnn", dataset="digits")
    axes = np.array(fig.axes).reshape(3, -1)
    assert axes.shape[1] == 3  # only the three flipped inputs
    title = fig._suptitle.get_text()
    assert "small_cnn on digits" in title and "8/255" in title and "3 inputs the attack flipped" in title
    assert [ax.title.get_text().split("\n")[0] for ax in axes[0]] == ["y=0", "y=2", "y=4"]
    assert all(ax.title.get_color() == CHANGED for ax in axes[1])
    assert all(ax.title.get_color() == UNCHANGED for ax in axes[0])


def test_example_grid_says_when_nothing_flipped():
    s = _samples()
    unflipped = AttackSamples(s.x, s.y, s.x, s.pred, s.conf, s.pred, s.conf, s.target)
    fig = examples_figure(_result(samples=unflipped), n=4)
    assert "no kept input flipped" in fig._suptitle.get_text() and len(fig.axes) == 12


def test_accuracy_curve_starts_at_clean_accuracy():
    results = [_result(eps=e / 255, robust=r) for e, r in ((2, 0.8), (8, 0.4))]
    ax = accuracy_figure(results, model="m", dataset="digits").axes[0]
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [0.0, 2.0, 8.0] and line.get_ydata().tolist() == [0.9, 0.8, 0.4]
    assert "m on digits" in ax.get_title()


def test_one_budget_is_a_bar_chart_with_values_and_a_zoomed_axis():
    results = [_result("fgsm-linf", robust=0.977, clean=0.985), _result("pgd-linf", robust=0.975, clean=0.985)]
    ax = accuracy_figure(results, dataset="digits").axes[0]
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    assert [round(b.get_height(), 3) for b in bars] == [0.985, 0.977, 0.975]
    assert [t.get_text() for t in ax.texts] == ["0.985", "0.977", "0.975"]
    lo, hi = ax.get_ylim()
    assert 0.9 < lo < 0.975 and 0.985 < hi <= 1.02  # zoomed: the differences are visible
    assert "eps 8/255" in ax.get_title()


def test_zoom_keeps_the_full_range_for_large_differences():
    assert zoom([0.1, 0.9]) == (0.0, 1.02)
    lo, hi = zoom([0.977, 0.985])
    assert lo < 0.977 and hi > 0.985 and hi - lo < 0.1


def test_no_grid_for_eps_zero(tmp_path):
    results = [_result(eps=0.0, robust=0.9, samples=_samples()), _result(eps=8 / 255, samples=_samples())]
    names = [p.name for p in plot_attacks(results, tmp_path)]
    assert names == ["accuracy_vs_eps.png", "pgd_linf_eps8_255.png"]


def _report(eps_values=(8 / 255,)):
    rows = []
    for model, clean, robust, auroc in (("plain", 0.985, 0.6, 0.977), ("adv", 0.98, 0.9, 0.985)):
        rows.append(Row(model, "test", "", None, "accuracy", clean))
        rows += [Row(model, "test", "pgd-linf", e, "robust_accuracy", robust - e) for e in eps_values]
        rows.append(Row(model, "noise", "", None, "auroc", auroc, "msp"))
    return Report(rows, {"config": {"dataset": "digits"}})


def test_report_curves_start_at_clean_accuracy_with_several_budgets():
    ax = report_accuracy(_report((4 / 255, 8 / 255))).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert lines["plain · pgd-linf"].get_xdata().tolist()[0] == 0.0
    assert lines["plain · pgd-linf"].get_ydata().tolist()[0] == 0.985


def test_report_one_budget_bars_and_legend_outside():
    ax = report_accuracy(_report(), dataset="digits").axes[0]
    assert len([c for c in ax.containers if isinstance(c, BarContainer)]) == 2  # clean, pgd-linf
    assert "digits" in ax.get_title() and "8/255" in ax.get_title()
    anchor = ax.get_legend().get_bbox_to_anchor().transformed(ax.transAxes.inverted())
    assert anchor.x0 > 1.0  # beside the axes, not over the bars


def test_auroc_bars_zoomed_with_values():
    ax = auroc_figure(_report(), dataset="digits").axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0.977", "0.985"]
    assert ax.get_ylim()[0] > 0.9


def _ood():
    rng = np.random.default_rng(0)
    scores = {"id": {"msp": rng.normal(0, 1, 300)}, "noise": {"msp": rng.normal(2, 1, 100)}}
    rows = [{"detector": "msp", "ood_set": "noise", "auroc": 0.9, "aupr_out": 0.8}]
    return OODResult(rows=rows, scores=scores, thresholds={"msp": 1.6}, id_accuracy=0.9)


def test_histograms_are_steps_with_a_log_option():
    ax = histogram_figure(_ood(), "msp", model="m", dataset="digits").axes[0]
    assert all(p.get_fill() is False for p in ax.patches)
    assert ax.get_yscale() == "linear" and "m on digits" in ax.get_title()
    assert histogram_figure(_ood(), "msp", log=True).axes[0].get_yscale() == "log"


def test_pr_curve_has_the_no_skill_baseline():
    _, pr = curves_figures(_ood(), "msp")
    baselines = [ln for ln in pr.axes[0].get_lines() if "baseline" in ln.get_label()]
    assert len(baselines) == 1 and baselines[0].get_ydata()[0] == pytest.approx(100 / 400)


def test_squeezing_plot_draws_detection_and_accuracy():
    rows = [
        Row("m", "test", "", None, "false_positive_rate", 0.05, "squeeze"),
        Row("m", "test", "fgsm-linf", 8 / 255, "robust_accuracy", 0.4),
        Row("m", "test", "fgsm-linf", 8 / 255, "detection_rate", 0.7, "squeeze"),
        Row("m", "test", "fgsm-linf", 8 / 255, "detection_rate_successful", 0.8, "squeeze"),
        Row("m", "test", "fgsm-linf", 8 / 255, "squeezed_robust_accuracy", 0.6, "squeeze"),
    ]
    fig = squeezing_figure(Report(rows), "m", dataset="digits")
    left, right = fig.axes
    heights = [b.get_height() for c in left.containers for b in c]
    assert heights == pytest.approx([0.7, 0.8])
    assert [b.get_height() for c in right.containers for b in c] == pytest.approx([0.4, 0.6])
    assert any(ln.get_ydata()[0] == 0.05 for ln in left.get_lines())  # the FPR line
    assert "m on digits" in fig._suptitle.get_text()
