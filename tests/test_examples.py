"""The scripts in examples/ run end to end on digits, offline, and print the tables they promise.

Each script runs in a subprocess, as a user runs it, with the model cache in a temporary
directory shared by the three scripts (so each digits model is trained once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustood.models import save_checkpoint
from robustood.resolve import cached_model_path

from test_report import markdown_cells

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.slow  # trains a handful of small digits models (about a minute in all)


@pytest.fixture(scope="module")
def example_env(tmp_path_factory, digits, digits_model):
    cache = tmp_path_factory.mktemp("examples-cache")
    # The session's digits model is the default ``plain`` one (same architecture, recipe,
    # seed and training settings): put it where the scripts look, so they train only the rest.
    save_checkpoint(digits_model, cached_model_path(digits, "small_cnn", "plain", 0, cache), digits.info, "small_cnn")
    env = dict(os.environ)
    env["ROBUSTOOD_CACHE_DIR"] = str(cache)
    env["ROBUSTOOD_DATA_DIR"] = str(tmp_path_factory.mktemp("examples-data"))
    # One intra-op thread: on a small shared CI machine, torch's thread pool competing with
    # other processes slows these tiny models down many times over.
    env["OMP_NUM_THREADS"] = "1"
    env.pop("MPLBACKEND", None)
    return env


def run_example(name: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of every markdown table printed, by model label (first cell) → the remaining cells, headers excluded."""
    table_lines = "\n".join(line for line in stdout.splitlines() if line.startswith("|"))
    return {cells[0]: cells[1:] for cells in markdown_cells(table_lines) if cells[0] != "model"}


def numbers(cells: list[str]) -> list[float]:
    return [float(c) for c in cells if c not in ("", "–")]


def test_cache_dir_reaches_the_subprocess(example_env, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "from robustood.utils import cache_dir; print(cache_dir())"],
        env=example_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(out.stdout.strip()) == Path(example_env["ROBUSTOOD_CACHE_DIR"])


def test_quickstart_digits(example_env, tmp_path):
    plots = tmp_path / "plots"
    proc = run_example("quickstart_digits.py", str(plots), env=example_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = table_rows(proc.stdout)
    assert list(rows) == ["plain", "adv:fgsm:8/255"]
    for cells in rows.values():
        values = numbers(cells)
        assert len(values) == 8  # accuracy, AUROC, FPR95, robust accuracy under 4 attacks, their worst case at 8/255
        assert all(0.0 <= v <= 1.0 for v in values)
    assert "FGSM at 8/255: robust accuracy" in proc.stdout
    assert sorted(p.name for p in plots.glob("*.png")) == ["ood_auroc.png", "robust_accuracy_vs_eps.png"]
    assert (
        Path(example_env["ROBUSTOOD_CACHE_DIR"]) / "models" / "digits-small_cnn-adv_fgsm_8_255-s0.safetensors"
    ).is_file()


def test_bring_your_own_model(example_env, tmp_path):
    proc = run_example("bring_your_own_model.py", env=example_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = table_rows(proc.stdout)
    assert list(rows) == ["mine", "plain", "mine (file)", "small_cnn (checkpoint)"]
    # The TorchScript file is the same network: every number equals the in-memory model's.
    assert rows["mine (file)"] == rows["mine"]
    assert numbers(rows["mine"])[0] > 0.8  # clean accuracy of a 2-layer perceptron on digits
    assert numbers(rows["small_cnn (checkpoint)"])[0] > 0.8


def test_study_on_digits(example_env, tmp_path):
    store = tmp_path / "study.jsonl"
    args = ["--dataset", "digits", "--epochs", "3", "--limit", "120", "--eps", "2/255,32/255", "--device", "cpu"]
    proc = run_example("cifar10_study.py", *args, "--store", str(store), env=example_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = table_rows(proc.stdout)
    expected = ["plain:epochs=3", "adv:fgsm:2/255:epochs=2", "adv:fgsm:2/255:epochs=3", "adv:fgsm:4/255:epochs=3"]
    assert list(rows) == expected
    for cells in rows.values():
        assert len(numbers(cells)) == 5  # accuracy, 2 × robust accuracy, AUROC, FPR95
    assert "max-logit AUROC vs noise" in proc.stdout
    stored = store.read_bytes()
    assert stored.count(b"\n") == 4 * 5  # per model: the clean pass, one OOD set, two attacks, masking checks

    # A rerun with the same store resumes: the same table, and no unit computed (or written) again.
    again = run_example("cifar10_study.py", *args, "--store", str(store), env=example_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert table_rows(again.stdout) == rows
    assert store.read_bytes() == stored


def test_study_without_cifar10_offline_says_what_to_do(example_env, tmp_path):
    proc = run_example("cifar10_study.py", "--no-download", env=example_env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "CIFAR-10" in proc.stderr
    assert "--dataset digits" in proc.stderr
    assert proc.stdout == ""
