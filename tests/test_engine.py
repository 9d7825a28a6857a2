"""The one evaluation engine: every command's numbers come from the same passes, made once."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner
from torch import nn

from robustood.attacks import build_attack
from robustood.cli import main
from robustood.evaluate import evaluate
from robustood.utils import seeded


class _Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def test_compare_attacks_at_exactly_the_eps_given(checkpoint, tmp_path):
    out = tmp_path / "report.json"
    args = ["compare", "-m", str(checkpoint), "--attack", "fgsm", "--eps", "0.1234567", "--detector", "none"]
    result = CliRunner().invoke(main, [*args, "--limit", "32", "-q", "--report", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    eps = {r["eps"] for r in json.loads(out.read_text())["rows"] if r["attack"]}
    assert eps == {0.1234567}


def test_attack_and_compare_report_the_same_robust_accuracy(checkpoint):
    common = ["-m", str(checkpoint), "--eps", "8/255,32/255", "--limit", "120", "-q", "--format", "json"]
    attack = CliRunner().invoke(main, ["attack", "--attack", "fgsm,pgd", *common, "--device", "cpu"])
    compare = CliRunner().invoke(
        main, ["compare", "--attack", "fgsm,pgd", "--detector", "none", *common, "--device", "cpu"]
    )
    assert attack.exit_code == 0 and compare.exit_code == 0, attack.output + compare.output
    by_attack = {(r["attack"], r["eps_text"]): r["robust_accuracy"] for r in json.loads(attack.stdout)}
    (row,) = json.loads(compare.stdout)
    by_compare = {
        tuple(k[len("robust_accuracy[") : -1].split("@")): v for k, v in row.items() if k.startswith("robust_acc")
    }
    worst = {eps: by_compare.pop(("worst", eps)) for eps in ("8/255", "32/255")}
    assert by_attack == by_compare and len(by_attack) == 4
    for eps, value in worst.items():  # the per-sample worst case is at most the better attack's
        assert value <= min(by_attack[("fgsm-linf", eps)], by_attack[("pgd-linf", eps)])


def test_attack_passes_reuse_the_clean_logits(digits, digits_model):
    """One clean pass, then per attack × eps only the attack's own passes: FGSM's gradient pass and the
    pass over the adversarial batch (no clean forward pass per attack × eps)."""
    counting = _Counting(digits_model).eval()
    attacks = [build_attack("fgsm", eps=e) for e in (2 / 255, 8 / 255, 32 / 255)]
    evaluate({"m": counting}, digits.limited(100), attacks=attacks, batch_size=50, device="cpu", progress=False)
    check = 1  # the model is checked against the dataset with one dummy batch
    masking = 2  # the gradient-masking checks: two forward passes on one batch
    assert counting.calls == check + 2 + 3 * 2 * 2 + masking


def test_evaluation_leaves_the_global_random_streams_alone(digits, digits_model):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluate(
        {"m": digits_model},
        digits.limited(64),
        attacks=["pgd:8/255"],
        detectors=["msp"],
        ood=["noise"],
        device="cpu",
        progress=False,
    )
    assert torch.equal(torch.rand(3), expected)


def test_seeded_blocks_repeat_and_restore_the_caller_stream():
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    with seeded(3):
        a = torch.rand(4)
    with seeded(3):
        b = torch.rand(4)
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_frozen_attack_gives_the_same_rows_in_two_evaluations(digits, digits_model):
    attack = build_attack("pgd", eps=8 / 255, seed=3)
    kw = dict(attacks=[attack], device="cpu", progress=False)
    one = evaluate({"m": digits_model}, digits.limited(64), **kw)
    two = evaluate({"m": digits_model}, digits.limited(64), **kw)
    pick = [(r.metric, r.value) for r in one.rows if r.metric not in ("seconds", "images_per_second")]
    assert pick == [(r.metric, r.value) for r in two.rows if r.metric not in ("seconds", "images_per_second")]


def test_bad_keep_and_precision_are_refused_before_any_training(digits, tmp_path):
    import pytest

    from robustood.errors import RobustoodError

    for kwargs, message in (
        (dict(keep=-1), "keep must be"),
        (dict(keep=2.5), "keep must be"),
        (dict(precision="fp16"), "unknown precision"),
    ):
        with pytest.raises(RobustoodError, match=message):
            evaluate("plain", digits, attacks=["fgsm:2/255"], cache=tmp_path, device="cpu", **kwargs)
    assert not (tmp_path / "models").exists()  # refused before a model was trained
