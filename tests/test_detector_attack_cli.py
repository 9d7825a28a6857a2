"""``--attack-detector`` in ``robustood ood`` and ``robustood compare``: rows per side next to the
clean ones, saved inputs and scores that reproduce them, histograms, and one Error line for bad values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustood.cli import main
from robustood.detectors import load_scores, ood_metrics


def _ood(runner, checkpoint, *args):
    return runner.invoke(
        main, ["ood", "--model", str(checkpoint), "--quiet", "--device", "cpu", "--limit", "60", *args]
    )


def test_rows_follow_each_clean_row_per_attack_and_side(runner, checkpoint):
    args = ["--detector", "maxlogit,knn", "--ood", "noise", "--attack-detector", "pgd:2/255,pgd:8/255"]
    result = _ood(runner, checkpoint, *args, "--attack-detector", "pgd:0.5:l2", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    cells = [(r["detector"], r["side"], r["attack"], r["eps"]) for r in rows]
    budgets = [("pgd-linf", "2/255"), ("pgd-linf", "8/255"), ("pgd-l2", "0.5")]
    expected = []
    for det in ("maxlogit", "knn"):
        expected.append((det, "clean", "", ""))
        expected += [(det, side, a, e) for a, e in budgets for side in ("out", "in", "both")]
    assert cells == expected
    for r in rows:
        clean = next(c for c in rows if c["detector"] == r["detector"] and c["side"] == "clean")
        assert r["auroc"] <= clean["auroc"] + 1e-12
        assert r["n_id"] == 60 and r["id_accuracy"] == clean["id_accuracy"]
    table = _ood(runner, checkpoint, *args)
    header = table.output.splitlines()[0].split()
    assert header[:5] == ["detector", "ood_set", "attack", "eps", "side"]


def test_save_scores_keeps_inputs_and_attacked_scores(runner, checkpoint, tmp_path):
    path = tmp_path / "s.npz"
    args = ["--detector", "energy", "--ood", "noise", "--attack-detector", "pgd:8/255", "--save-scores", str(path)]
    result = _ood(runner, checkpoint, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["side"]: r for r in json.loads(result.stdout)}
    data = load_scores(path)
    name = "energy@pgd-linf@8/255"
    ident, noise = data["ood_set"] == "id", data["ood_set"] == "noise"
    pairs = {
        "clean": (data["energy"][ident], data["energy"][noise]),
        "out": (data["energy"][ident], data[name][noise]),
        "in": (data[name][ident], data["energy"][noise]),
        "both": (data[name][ident], data[name][noise]),
    }
    for side, (s_id, s_ood) in pairs.items():
        assert ood_metrics(s_id, s_ood)["auroc"] == pytest.approx(rows[side]["auroc"], abs=1e-12)
    with np.load(path, allow_pickle=False) as arrays:
        for s in ("id", "noise"):
            x, x_adv = arrays[f"{s}__x"], arrays[f"{s}__{name}__x_adv"]
            assert x.shape == x_adv.shape == (60, 1, 8, 8) and x_adv.dtype == np.float32
            assert np.abs(x_adv - x).max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    csv = tmp_path / "s.csv"
    assert _ood(runner, checkpoint, *args[:-1], str(csv)).exit_code == 0
    assert np.allclose(load_scores(csv)[name], data[name])


def test_plots_add_clean_vs_attacked_histograms(runner, checkpoint, tmp_path):
    out = tmp_path / "p"
    args = ["--detector", "msp", "--ood", "noise", "--attack-detector", "pgd:8/255", "--plots", str(out)]
    result = _ood(runner, checkpoint, *args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["msp_hist.png", "msp_pgd_linf_8_255_attacked_hist.png", "msp_pr.png", "msp_roc.png"]
    assert (out / names[1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_adds_robust_auroc_columns(runner, checkpoint):
    result = runner.invoke(
        main,
        [
            "compare",
            *("-m", str(checkpoint), "--attack", "none", "--detector", "maxlogit", "--ood", "noise"),
            *("--attack-detector", "pgd:8/255", "--limit", "60", "-q", "--device", "cpu", "--format", "json"),
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    robust = row["robust_auroc[maxlogit|noise@pgd-linf@8/255]"]
    assert robust < row["auroc[maxlogit|noise]"]
    assert (
        list(row).index("robust_auroc[maxlogit|noise@pgd-linf@8/255]") == list(row).index("auroc[maxlogit|noise]") + 1
    )


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("ood", ["--attack-detector", "ddn:1"], "use pgd, bim, fgsm"),
        ("ood", ["--attack-detector", "pgd"], "needs a budget"),
        ("ood", ["--attack-detector", "pgd:2"], "did you mean 2/255"),
        ("ood", ["--attack-detector", "pgd:8/255,"], "empty entry"),
        ("ood", ["--attack-detector", "pgd:8/255:targeted=1"], "no target class"),
        ("ood", ["--attack-detector", "pgd:8/255", "--ood", "adv:fgsm:8/255"], "plain OOD set"),
        ("compare", ["--detector", "none", "--attack-detector", "pgd:8/255"], "needs detectors and OOD sets"),
        ("compare", ["--attack-detector", "pgd:1/0"], "--attack-detector"),
    ],
)
def test_bad_values_exit_2_with_one_error_line(runner, checkpoint, tmp_path, command, args, message):
    result = runner.invoke(main, [command, "--model" if command == "ood" else "-m", str(checkpoint), *args, "-q"])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
