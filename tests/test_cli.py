"""The foundation commands: help, train, datasets, models, and the error contract."""

from __future__ import annotations

import json

import pytest

from robustood.cli import main
from robustood.cli.options import EpsList


def test_every_command_has_help(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    for name in main.commands:
        sub = runner.invoke(main, [name, "--help"])
        assert sub.exit_code == 0, name
        assert "Usage" in sub.output


def test_version(runner):
    from robustood import __version__

    assert __version__ in runner.invoke(main, ["--version"]).output


def test_train_digits_table_and_json_agree(runner, tmp_path):
    args = ["train", "--cache-dir", str(tmp_path), "--epochs", "3", "--quiet"]
    table = runner.invoke(main, args)
    assert table.exit_code == 0, table.output
    rows = json.loads(runner.invoke(main, [*args, "--format", "json"]).output)
    assert len(rows) == 1 and rows[0]["source"] == "cache" and rows[0]["epochs"] == 3
    assert f"{rows[0]['test_accuracy']:.3f}" in table.output
    # trained with a non-default length: cached under its own name, never mistaken for the default model
    assert [p.name for p in (tmp_path / "models").glob("*.safetensors")] == [
        "digits-small_cnn-plain-epochs3-s0.safetensors"
    ]
    assert rows[0]["checkpoint"].endswith("digits-small_cnn-plain-epochs3-s0.safetensors")


def test_train_save_and_out(runner, tmp_path):
    ckpt, out = tmp_path / "mine.pt", tmp_path / "train.csv"
    result = runner.invoke(
        main,
        [
            "train",
            "--cache-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--quiet",
            "--save",
            str(ckpt),
            "--format",
            "csv",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert ckpt.exists() and out.read_text().startswith("dataset,model,recipe")

    from robustood.data import load_dataset
    from robustood.models import load_model

    _model, meta = load_model(ckpt, load_dataset("digits").info)
    assert meta["arch"] == "small_cnn" and meta["recipe"] == "plain"


def test_datasets_and_models_lists(runner):
    ds = json.loads(runner.invoke(main, ["datasets", "--format", "json"]).output)
    names = {r["name"] for r in ds}
    assert {"digits", "cifar10", "noise", "natural", "heldout:K"} <= names
    models = json.loads(runner.invoke(main, ["models", "--format", "json"]).output)
    assert {"small_cnn", "cifar_cnn", "resnet20", "resnet18"} <= {r["name"] for r in models}


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "0"],
        ["train", "--model", "vgg99"],
        ["train", "--lr", "-1"],
        ["train", "--format", "xml"],
        ["train", "--dataset", "imagenet"],
        ["train", "--device", "cuda:7"],
        ["nosuchcommand"],
    ],
)
def test_bad_input_exits_2_without_traceback(runner, args):
    import torch

    if args[-1] == "cuda:7" and torch.cuda.is_available():
        pytest.skip("CUDA is present: cuda:7 may exist")
    result = runner.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Error" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_dataset_offline_is_one_line_exit_1(runner, tmp_path):
    result = runner.invoke(main, ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: CIFAR-10 is not in")


@pytest.mark.parametrize(("text", "expected"), [("2/255", [2 / 255]), ("0,1/255,0.03", [0, 1 / 255, 0.03])])
def test_eps_option_type(text, expected):
    assert EpsList().convert(text, None, None) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "-1", "1/0", "2"])
def test_eps_option_type_rejects(text):
    import click

    with pytest.raises(click.BadParameter):
        EpsList().convert(text, None, None)
