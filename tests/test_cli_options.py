"""One meaning per option across commands: list options repeatable and comma-separated alike,
``--arch`` / ``--model`` / ``--batch-size`` everywhere, old spellings deprecated, progress lines."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from robustood.cli import main
from robustood.cli.options import deprecated_alias, list_option, split_values

BASE = ["--quiet", "--device", "cpu", "--format", "json"]


def _json(runner, *args):
    result = runner.invoke(main, [*args, *BASE])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_split_values_flattens_repeats_and_commas():
    assert split_values(("fgsm, pgd", "bim")) == ["fgsm", "pgd", "bim"]
    assert split_values(("a,",)) == ["a", ""]


def _probe(*decorators):
    @click.command()
    @list_option("--thing", "things", what="thing", choices=("a", "b", "c"), default=("a",))
    def cmd(things):
        click.echo(json.dumps(things))

    return cmd


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["a"]),
        (["--thing", "b"], ["b"]),
        (["--thing", "b,c"], ["b", "c"]),
        (["--thing", "b", "--thing", "c"], ["b", "c"]),
        (["--thing", "C,b", "--thing", "c"], ["c", "b"]),
    ],
)
def test_list_option_repeatable_and_comma_separated_alike(args, expected):
    result = CliRunner().invoke(_probe(), args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


@pytest.mark.parametrize(("args", "message"), [(["--thing", "d"], "unknown thing 'd'"), (["--thing", "a,"], "empty")])
def test_list_option_refuses_bad_items(args, message):
    result = CliRunner().invoke(_probe(), args)
    assert result.exit_code == 2 and message in result.output


def test_deprecated_alias_sets_the_new_option_with_a_note():
    @click.command()
    @deprecated_alias("--old-size", "--size", "size", type=int)
    @click.option("--size", type=int, default=3)
    def cmd(size):
        click.echo(f"size={size}")

    runner = CliRunner()
    new = runner.invoke(cmd, ["--size", "5"])
    assert new.stdout == "size=5\n" and "deprecated" not in new.output
    old = runner.invoke(cmd, ["--old-size", "7"])
    assert old.exit_code == 0 and old.stdout == "size=7\n"
    assert "--old-size is deprecated" in old.stderr and "use --size" in old.stderr
    both = runner.invoke(cmd, ["--old-size", "7", "--size", "5"])
    assert both.exit_code == 2 and "not both" in both.output
    assert "--old-size" not in runner.invoke(cmd, ["--help"]).output  # hidden


def test_attack_repeated_attack_and_eps_run_every_unit(runner, checkpoint):
    args = ["attack", "--model", str(checkpoint), "--limit", "16", "--steps", "1"]
    repeated = _json(runner, *args, "--attack", "fgsm", "--attack", "pgd", "--eps", "2/255", "--eps", "8/255")
    comma = _json(runner, *args, "--attack", "fgsm,pgd", "--eps", "2/255,8/255")
    keys = [(r["attack"], r["eps_text"]) for r in repeated]
    assert keys == [(a, e) for a in ("fgsm-linf", "pgd-linf") for e in ("2/255", "8/255")]
    assert [r["robust_accuracy"] for r in repeated] == [r["robust_accuracy"] for r in comma]


def test_ood_repeated_sets_are_all_evaluated(runner, checkpoint):
    rows = _json(
        runner,
        "ood",
        "--model",
        str(checkpoint),
        "--limit",
        "32",
        "--detector",
        "msp",
        "--ood",
        "noise",
        "--ood",
        "natural",
    )
    assert [r["ood_set"] for r in rows] == ["noise", "natural"]


def test_attack_takes_several_models(runner, checkpoint, tmp_path):
    other = tmp_path / "copy.safetensors"
    other.write_bytes(checkpoint.read_bytes())
    args = ["attack", "--model", str(checkpoint), "--model", str(other), "--attack", "fgsm", "--limit", "16"]
    rows = _json(runner, *args)
    assert len(rows) == 2 and rows[0]["robust_accuracy"] == rows[1]["robust_accuracy"]
    assert len({r["model"] for r in rows}) == 2


def test_defend_takes_the_attack_options_and_labels_like_attack(runner, checkpoint):
    common = ["--model", str(checkpoint), "--attack", "pgd", "--eps", "8/255", "--steps", "2", "--limit", "32"]
    defended = _json(runner, "defend", "--defense", "squeeze", *common, "--no-random-start")
    attacked = _json(runner, "attack", *common, "--no-random-start")
    assert defended[0]["attack"] == attacked[0]["attack"] == "pgd-linf"
    assert defended[0]["robust_accuracy"] == attacked[0]["robust_accuracy"]
    l2 = _json(
        runner,
        "defend",
        "--defense",
        "squeeze",
        "--model",
        str(checkpoint),
        "--attack",
        "pgd",
        "--norm",
        "2",
        "--eps",
        "0.5",
        "--steps",
        "2",
        "--limit",
        "16",
    )
    assert l2[0]["attack"] == "pgd-l2"


def test_defend_refuses_several_models(runner, checkpoint):
    result = runner.invoke(main, ["defend", "--defense", "squeeze", "-m", f"{checkpoint},{checkpoint}x", *BASE])
    assert result.exit_code == 2 and "one model" in result.output


@pytest.mark.parametrize("command", ["train", "attack", "ood", "defend", "compare"])
def test_option_names_mean_one_thing_everywhere(command):
    params = {p.name: p for p in main.commands[command].params}
    visible = {opt for p in main.commands[command].params if not p.hidden for opt in p.opts}
    assert "--arch" in visible  # an architecture everywhere
    assert "--train-batch-size" not in visible
    if command != "train":
        assert params["models"].multiple  # --model names models, repeatable
        assert "--batch-size" in visible
    else:
        assert "--batch-size" in visible and "--model" not in visible


def test_train_old_spellings_still_work_with_a_note(tmp_path):
    runner = CliRunner()
    args = ["train", "--cache-dir", str(tmp_path), "--epochs", "1", "--quiet", "--format", "json"]
    old = runner.invoke(main, [*args, "--model", "small_cnn", "--train-batch-size", "128"])
    assert old.exit_code == 0, old.output
    assert "--model is deprecated" in old.stderr and "--train-batch-size is deprecated" in old.stderr
    new = runner.invoke(main, [*args, "--arch", "small_cnn", "--batch-size", "128"])
    assert new.exit_code == 0 and "deprecated" not in new.stderr
    assert json.loads(old.stdout)[0]["checkpoint"] == json.loads(new.stdout)[0]["checkpoint"]
    assert "batchsize128" in json.loads(new.stdout)[0]["checkpoint"]


def test_progress_lines_on_stderr_without_a_terminal_and_stdout_stays_the_result(checkpoint):
    runner = CliRunner()
    args = ["attack", "--model", str(checkpoint), "--attack", "fgsm", "--eps", "2/255,8/255", "--limit", "16"]
    result = runner.invoke(main, [*args, "--device", "cpu", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # nothing but the result on stdout
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("robustood: ")]
    assert len(lines) == 1 + len(rows)  # the clean unit, then one per attack × eps
    assert "fgsm-linf@8/255 done" in lines[-1] and "[3/3]" in lines[-1]
    quiet = runner.invoke(main, [*args, "--device", "cpu", "--format", "json", "--quiet"])
    assert quiet.stderr == ""


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "robustood", "--version"], capture_output=True, text=True, check=True)
    assert "robustood" in out.stdout
