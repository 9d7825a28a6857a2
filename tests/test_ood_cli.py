"""``robustood ood``: table and json agree, scores round-trip, plots are written, bad values exit 2."""

from __future__ import annotations

import json

import pytest

from robustood.cli import main
from robustood.data import load_dataset
from robustood.detectors import load_scores, ood_metrics
from robustood.resolve import pretrained
from robustood.train import TrainConfig

from test_report import shown_as


def _ood(runner, checkpoint, *args):
    return runner.invoke(main, ["ood", "--model", str(checkpoint), "--quiet", "--device", "cpu", *args])


def test_table_and_json_agree(runner, checkpoint):
    args = ["--detector", "msp", "--detector", "energy,mahalanobis", "--ood", "noise,natural", "--ood-size", "80"]
    table = _ood(runner, checkpoint, *args)
    assert table.exit_code == 0, table.output
    result = _ood(runner, checkpoint, *args, "--format", "json")
    rows = json.loads(result.output)
    assert [(r["detector"], r["ood_set"]) for r in rows] == [
        (d, s) for s in ("noise", "natural") for d in ("msp", "energy", "mahalanobis")
    ]
    assert all(r["n_ood"] == 80 and r["n_id"] == 360 for r in rows)
    header, _, *lines = table.output.splitlines()
    metrics = ["auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "detection_accuracy", "id_accuracy"]
    assert header.split() == ["detector", "ood_set", *metrics]  # csv / json add dataset, model, n_id, n_ood
    for line, r in zip(lines, rows, strict=True):
        cells = line.split()
        assert cells[:2] == [r["detector"], r["ood_set"]]
        assert all(shown_as(c, r[m]) for c, m in zip(cells[2:], metrics, strict=True)), (cells, r)
    assert {"dataset", "model", "n_id", "n_ood"} <= set(rows[0])
    assert min(r["auroc"] for r in rows if r["ood_set"] == "noise") > 0.85


def test_default_detectors(runner, checkpoint):
    rows = json.loads(_ood(runner, checkpoint, "--ood", "noise", "--ood-size", "40", "--format", "json").output)
    assert [r["detector"] for r in rows] == ["msp", "maxlogit", "energy"]


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_save_scores_round_trip(runner, checkpoint, tmp_path, suffix):
    path = tmp_path / f"scores{suffix}"
    result = _ood(
        runner, checkpoint, "--ood", "noise", "--ood-size", "50", "--save-scores", str(path), "--format", "json"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    data = load_scores(path)
    assert (data["ood_set"] == "id").sum() == 360 and (data["ood_set"] == "noise").sum() == 50
    assert set(data["is_ood"][data["ood_set"] == "noise"]) == {1}
    for r in rows:
        m = ood_metrics(data[r["detector"]][data["ood_set"] == "id"], data[r["detector"]][data["ood_set"] == "noise"])
        assert m["auroc"] == pytest.approx(r["auroc"], abs=1e-12)


def test_plots_are_pngs(runner, checkpoint, tmp_path):
    result = _ood(runner, checkpoint, "--detector", "msp", "--ood", "noise,natural", "--plots", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == ["msp_hist.png", "msp_pr.png", "msp_roc.png"]
    for name in names:
        assert (tmp_path / "p" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_heldout_uses_the_reduced_dataset(runner, tmp_path):
    bundle = load_dataset("digits", heldout=3)
    cfg = TrainConfig(epochs=5, patience=None)
    pretrained(bundle, "small_cnn", cache=tmp_path, config=cfg, progress=False, device="cpu")  # fills the cache
    result = runner.invoke(
        main, ["ood", "--cache-dir", str(tmp_path), "-q", "--ood", "heldout:3", "--detector", "msp", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["dataset"] == "digits-h3" and row["ood_set"] == "heldout:3"
    assert row["n_ood"] == sum(1 for _, y in load_dataset("digits").test if y >= 7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--detector", "nope"], "known detectors"),
        (["--detector", "msp,"], "empty detector"),
        (["--ood", "noise,,natural"], "comma-separated"),
        (["--ood", "heldout:x"], "heldout:K"),
        (["--ood", "heldout:2,heldout:3"], "one heldout:K"),
        (["--ood", "martians"], "known: noise, gaussian, natural, heldout:K, cifar100, cifar10, digits,"),
        (["--save-scores", "scores.txt"], ".npz or .csv"),
        (["--ood-size", "0"], "ood-size"),
    ],
)
def test_bad_values_exit_2(runner, checkpoint, args, message):
    result = _ood(runner, checkpoint, *args)
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output


def test_help_lists_detectors_and_examples(runner):
    result = runner.invoke(main, ["ood", "--help"])
    assert result.exit_code == 0
    assert "mahalanobis" in result.output and "adv:fgsm:2/255" in result.output


def test_adversarial_ood_set(runner, checkpoint):
    result = _ood(runner, checkpoint, "--ood", "adv:fgsm:64/255", "--ood-size", "40", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["ood_set"] for r in rows} == {"adv:fgsm:64/255"} and all(r["n_ood"] == 40 for r in rows)
