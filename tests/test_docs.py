"""Docs that cannot drift: the CLI reference is generated, documented command output matches a
rerun within the stated tolerance, Python snippets run as written, and the Mahalanobis wording
matches what pytorch-ood computes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tolerance import differences

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "gen"))

import regen  # noqa: E402

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_cli_reference_is_current_and_clean():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert text == regen.cli_reference(), "docs/cli.md is stale: run python docs/gen/regen.py"
    assert "Sentinel" not in text and "UNSET" not in text
    assert "<cache-dir>" not in text and "&lt;cache-dir&gt;" in text
    for command in ("attack", "ood", "defend", "compare", "train", "datasets", "models"):
        assert f"## robustood {command}" in text


@pytest.mark.parametrize("name", [name for name, sample in regen.SAMPLES.items() if not sample.slow])
def test_documented_output_matches_a_rerun(name, one_thread_cache, monkeypatch):
    """Every documented number is a rerun's within the tolerance of its kind (``tests/tolerance.py``,
    the same as the pinned outputs') widened by the precision it is printed at."""
    monkeypatch.setenv("ROBUSTOOD_CACHE_DIR", str(one_thread_cache))
    documented = regen.cells(regen.documented(name))
    rerun = regen.numbers(regen.run_sample(name))
    assert documented and set(documented) == set(rerun)
    sample = regen.SAMPLES[name]
    far = {}
    for key in {key for key, _ in documented}:
        pinned = {col: float(text) for (k, col), text in documented.items() if k == key}
        got = {col: value for (k, col), value in rerun.items() if k == key}
        printed = {col: regen.half_unit(text) for (k, col), text in documented.items() if k == key}
        far.update({(key, col): d for col, d in differences(got, pinned, sample.n, rounding=printed).items()})
    assert not far, f"docs/{sample.page} differs from a rerun (rerun, documented): {far}"


def test_numbers_reads_wrapped_tables_and_markdown():
    table = (
        "attack  eps  a     images_per_second\n------  ---  ----  ----\nfgsm    2/255  0.5  10\n\n"
        "attack  eps  b\n--  --  --\nfgsm    2/255  0.25\n"
    )
    assert regen.numbers(table) == {("fgsm 2/255", "a"): 0.5, ("fgsm 2/255", "b"): 0.25}
    md = "| model | accuracy |\n|---|---|\n| plain | 0.969 |\n"
    assert regen.numbers(md) == {("plain", "accuracy"): 0.969}


def _snippets():
    """Every ```python block of the README and docs/, by page, with the setup and skip markers
    of the HTML comment just above it (``<!-- setup: robustood ... -->``, ``<!-- no-run: why -->``)."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = []
        for match in re.finditer(r"((?:<!--[^\n]*-->\n)*)```python\n(.*?)```", text, re.S):
            comments = match.group(1)
            if "no-run:" in comments:
                continue
            setup = re.findall(r"<!-- setup: (.*?) -->", comments)
            blocks.append((setup, match.group(2)))
        if blocks:
            out.append(pytest.param(page.name, blocks, id=page.name))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("page", "blocks"), _snippets())
def test_python_snippets_run_as_written(page, blocks, tmp_path, monkeypatch):
    """The blocks of one page run in order in one namespace, as a reader runs them.

    What runs is the code as written; only the models the snippets train take 2 epochs here
    (a cache of this test's own keeps them away from every other test)."""
    from dataclasses import dataclass

    import robustood.defenses.distillation
    import robustood.resolve
    from robustood.cli import main
    from robustood.train import TrainConfig

    @dataclass(frozen=True)
    class ShortTraining(TrainConfig):
        epochs: int = 2

    for module in (robustood.resolve, robustood.defenses.distillation):
        monkeypatch.setattr(module, "TrainConfig", ShortTraining)
    monkeypatch.setenv("ROBUSTOOD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        namespace: dict = {"__name__": "__doc__"}
        for setup, code in blocks:
            for command in setup:
                args = command.split()[1:]
                result = CliRunner().invoke(main, [*args, "--device", "cpu", "--quiet"])
                assert result.exit_code == 0, result.output
            exec(compile(code, f"{page}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)  # later tests (the pinned goldens) run with the default


def test_mahalanobis_score_is_half_d2_over_n():
    """docs/ood.md: pytorch-ood 0.4 scores ½ d² / N (it inverts the scatter matrix, not the covariance)."""
    from pytorch_ood.detector import Mahalanobis

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    y = torch.arange(200) % 2
    z[y == 1] += 3
    det = Mahalanobis(None).fit_features(z.float(), y)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    mus = torch.stack([z[y == k].mean(0) for k in (0, 1)])
    centred = z - mus[y]
    cov = centred.T @ centred / len(z)  # the maximum-likelihood shared covariance
    d2 = torch.stack([((x - m) @ torch.linalg.inv(cov) * (x - m)).sum(1) for m in mus], 1).amin(1)
    expected = 0.5 * d2 / len(z)
    assert torch.allclose(det.predict_features(x.float()).double(), expected, rtol=1e-3)
