"""``robustood attack``: table and json agree, --save-adv round-trips, plots are PNGs, bad values exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustood.cli import main
from robustood.models import save_checkpoint
from robustood.resolve import cached_model_path

from test_report import shown_as

PNG = b"\x89PNG\r\n\x1a\n"


def _attack(runner, checkpoint, *args):
    return runner.invoke(main, ["attack", "--model", str(checkpoint), "--quiet", "--device", "cpu", *args])


def test_default_model_from_cache_prints_a_table(runner, digits, digits_model):
    """With no --model the cached default digits model is used (placed in the cache: no training here)."""
    save_checkpoint(digits_model, cached_model_path(digits, "small_cnn"), digits.info, "small_cnn", recipe="plain")
    result = runner.invoke(main, ["attack", "--eps", "2/255", "--limit", "64", "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "robust_accuracy" in lines[0] and "success_rate" in lines[0]
    assert [ln.split()[:2] for ln in lines[2:]] == [["fgsm-linf", "2/255"], ["pgd-linf", "2/255"]]


def test_model_may_be_a_training_recipe(runner, tmp_path):
    """``--model adv:fgsm:8/255:epochs=1`` trains that model once, caches it and labels the rows with the recipe."""
    args = ["attack", "--model", "adv:fgsm:8/255:epochs=1", "--eps", "8/255", "--attack", "fgsm", "--limit", "32"]
    args += ["--cache-dir", str(tmp_path), "--quiet", "--device", "cpu", "--format", "json"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    rows = json.loads(first.stdout)
    assert [r["model"] for r in rows] == ["adv:fgsm:8/255:epochs=1"]
    cached = [p.name for p in (tmp_path / "models").glob("*.safetensors")]
    assert cached == ["digits-small_cnn-adv_fgsm_8_255_epochs_1-s0.safetensors"]
    again = runner.invoke(main, args)  # from the cache: the same numbers
    assert again.exit_code == 0 and json.loads(again.stdout)[0]["robust_accuracy"] == rows[0]["robust_accuracy"]


def test_unknown_model_is_one_error_line(runner):
    for model, message in [("adv:nope:8/255", "unknown attack 'nope'"), ("nonsense", "unknown model 'nonsense'")]:
        result = runner.invoke(main, ["attack", "--model", model, "--quiet", "--device", "cpu"])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert [line for line in result.output.splitlines() if line.startswith("Error:")] == [
            next(line for line in result.output.splitlines() if message in line)
        ]


HEADLINE = [
    "attack",
    "eps",
    "clean_accuracy",
    "robust_accuracy",
    "success_rate",
    "confidence_drop",
    "mean_iterations",
    "linf_mean",
    "l2_mean",
    "images_per_second",
]


@pytest.mark.parametrize(("targeted", "extra"), [((), []), (("--targeted", "least-likely"), ["targeted"])])
def test_table_shows_headline_columns_and_json_keeps_all(runner, checkpoint, targeted, extra):
    args = ["--attack", "fgsm,pgd", "--eps", "8/255", "--steps", "2", "--limit", "32", *targeted]
    table = _attack(runner, checkpoint, *args)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    expected = HEADLINE[:2] + extra + HEADLINE[2:]
    assert lines[0].split() == expected
    markdown = _attack(runner, checkpoint, *args, "--format", "markdown").stdout.splitlines()
    assert [c.strip() for c in markdown[0].strip("|").split("|")] == expected
    rows = json.loads(_attack(runner, checkpoint, *args, "--format", "json").stdout)
    assert {"dataset", "model", "eps", "eps_text", "n", "linf_max", "l2_max", "seconds"} <= set(rows[0])
    csv_header = _attack(runner, checkpoint, *args, "--format", "csv").stdout.splitlines()[0].split(",")
    assert csv_header == list(rows[0])
    for line, r in zip(lines[2:], rows, strict=True):  # the table shows json's numbers, rounded
        cells = line.split()
        assert cells[0] == r["attack"] and cells[1] == r["eps_text"] == "8/255"
        shown = dict(zip(expected[2 + len(extra) :], cells[2 + len(extra) :], strict=True))
        for key in ("clean_accuracy", "robust_accuracy", "success_rate", "confidence_drop", "linf_mean", "l2_mean"):
            assert shown_as(shown[key], r[key]), (key, shown[key], r[key])


def test_table_and_json_agree_over_eps(runner, checkpoint):
    args = ["--attack", "fgsm,bim", "--eps", "0,4/255,32/255", "--steps", "3", "--limit", "80"]
    table = _attack(runner, checkpoint, *args)
    assert table.exit_code == 0, table.output
    rows = json.loads(_attack(runner, checkpoint, *args, "--format", "json").stdout)
    assert [(r["attack"], r["eps_text"]) for r in rows] == [
        (a, e) for a in ("fgsm-linf", "bim-linf") for e in ("0", "4/255", "32/255")
    ]
    for r in rows:
        assert r["n"] == 80
        assert f"{r['robust_accuracy']:.3f}" in table.stdout
        assert r["linf_max"] <= r["eps"] + 1e-6
    assert rows[0]["robust_accuracy"] == rows[0]["clean_accuracy"]  # eps 0
    assert rows[2]["robust_accuracy"] < rows[0]["robust_accuracy"]  # 32/255 hurts
    assert rows[2]["mean_iterations"] == 1.0 and rows[5]["mean_iterations"] >= 1.0


def test_save_adv_round_trip(runner, checkpoint, digits_model, tmp_path):
    path = tmp_path / "adv.npz"
    result = _attack(
        runner, checkpoint, "--attack", "pgd", "--eps", "8/255,16/255", "--limit", "40", "--save-adv", str(path)
    )
    assert result.exit_code == 0, result.output
    with np.load(path, allow_pickle=False) as data:
        keys = list(data["keys"])
        assert keys == ["pgd-linf_eps8_255", "pgd-linf_eps16_255"]
        for key, eps in zip(keys, (8 / 255, 16 / 255), strict=True):
            x, x_adv = data[f"{key}__x"], data[f"{key}__x_adv"]
            assert x.shape == x_adv.shape == (40, 1, 8, 8) and data[f"{key}__y"].shape == (40,)
            assert float(data[f"{key}__eps"]) == pytest.approx(eps)
            assert np.abs(x_adv - x).max() <= eps + 1e-6
            with torch.no_grad():
                pred = digits_model(torch.from_numpy(x_adv)).argmax(1).numpy()
            assert (pred == data[f"{key}__pred_adv"]).all()
    assert not list(tmp_path.glob(".adv.npz.*"))  # written atomically, no leftovers


def test_plots_are_pngs(runner, checkpoint, tmp_path):
    out = tmp_path / "plots"
    args = ["--attack", "fgsm", "--eps", "4/255,16/255", "--limit", "24", "--targeted", "least-likely"]
    result = _attack(runner, checkpoint, *args, "--plots", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["accuracy_vs_eps.png", "fgsm_linf_least_likely_eps4_255.png", "fgsm_linf_least_likely_eps16_255.png"]
    )
    assert all((out / n).read_bytes()[:8] == PNG for n in names)


def test_targeted_by_class_name(runner, checkpoint):
    rows = json.loads(
        _attack(
            runner,
            checkpoint,
            "--attack",
            "pgd",
            "--eps",
            "0.3",
            "--targeted",
            "3",
            "--limit",
            "40",
            "--step-size",
            "0.05",
            "--steps",
            "20",
            "--format",
            "json",
        ).stdout
    )
    assert rows[0]["targeted"] == "3" and rows[0]["attack"] == "pgd-linf-3"
    assert rows[0]["success_rate"] > 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "-1"], "eps must be in [0, 1]"),
        (["--eps=-1/255"], "eps must be in [0, 1]"),
        (["--eps", "2"], "did you mean 2/255"),
        (["--attack", "cw"], "known attacks: fgsm, bim, pgd, ddn"),
        (["--targeted", "cat"], "classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
        (["--targeted", "12"], "use an index 0..9"),
        (["--attack", "ddn"], "--norm 2"),
        (["--precision", "bf16"], "bf16 needs a CUDA device"),
        (["--save-adv", "adv.txt"], "use a .npz file name"),
        (["--step-size", "0"], "step size must be positive"),
    ],
)
def test_bad_values_exit_2_with_one_error_line(runner, checkpoint, args, message):
    result = _attack(runner, checkpoint, "--limit", "8", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and message in errors[0]


def test_model_with_other_classes_exit_2(runner, digits, tmp_path):
    from robustood.data import DatasetInfo
    from robustood.models import build_model

    info = digits.info
    other = DatasetInfo("digits", info.input_shape, info.class_names[:5], info.mean, info.std)
    path = save_checkpoint(build_model("small_cnn", other), tmp_path / "five.safetensors", other, "small_cnn")
    result = _attack(runner, path, "--limit", "8")
    assert result.exit_code == 2
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "10" in errors[0] and "5" in errors[0]
