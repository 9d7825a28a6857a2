"""The adaptive attack on feature squeezing: gradients through the squeezers, fewer inputs
detected than the plain attack on digits, and ``robustood defend --adaptive``."""

from __future__ import annotations

import json

import pytest
import torch

from robustood.attacks import build_attack
from robustood.cli import main
from robustood.defenses import (
    AdaptiveSqueezeAttack,
    BitDepth,
    FeatureSqueezingDetector,
    MedianFilter,
    adaptive_squeeze_attack,
)
from robustood.defenses.adaptive import differentiable_squeeze
from robustood.errors import RobustoodError
from robustood.evaluate import evaluate


def test_bit_depth_is_passed_straight_through():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    out = differentiable_squeeze(BitDepth(2), x)
    torch.testing.assert_close(out.detach(), BitDepth(2)(x.detach()), rtol=0, atol=1e-7)
    w = torch.randn_like(x)
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    torch.testing.assert_close(grad, w)


@pytest.mark.parametrize("window", [2, 3])
def test_median_filter_is_differentiated_directly(window):
    """Each output pixel is one input pixel (the one the sort selects): the gradient of the sum
    of the outputs counts how often each input pixel was selected."""
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    med = MedianFilter(window)
    out = differentiable_squeeze(med, x)
    assert torch.equal(out.detach(), med(x.detach()))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.sum().item() == pytest.approx(out.numel())
    assert torch.equal(grad, grad.round()) and (grad >= 0).all()


def test_adaptive_attack_is_a_gradient_attack_with_the_detectors_squeezers():
    det = FeatureSqueezingDetector(bit_depth=3, median_window=2)
    base = build_attack("pgd", eps=8 / 255, seed=2)
    atk = adaptive_squeeze_attack(base, det)
    assert isinstance(atk, AdaptiveSqueezeAttack) and atk.label == "adaptive-pgd-linf"
    assert (atk.eps, atk.steps, atk.alpha, atk.random_start, atk.seed) == (
        base.eps,
        base.steps,
        base.alpha,
        base.random_start,
        base.seed,
    )
    assert atk.squeezers == det.squeezers
    with pytest.raises(RobustoodError, match="untargeted fgsm, bim or pgd"):
        adaptive_squeeze_attack(build_attack("ddn", eps=1, norm=2), det)
    with pytest.raises(RobustoodError, match="weight"):
        adaptive_squeeze_attack(base, det, weight=-1)


def test_adaptive_attack_stays_in_the_ball_and_the_box(digits_model, digits_tensors):
    x, y = digits_tensors[0][:32], digits_tensors[1][:32]
    atk = adaptive_squeeze_attack(build_attack("pgd", eps=16 / 255), FeatureSqueezingDetector())
    x_adv = atk(digits_model, x, y, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 16 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_adaptive_attack_leaves_fewer_inputs_detected_on_digits(digits, digits_model):
    det = FeatureSqueezingDetector(bit_depth=2, median_window=2)
    plain = build_attack("pgd", eps=32 / 255)
    adaptive = adaptive_squeeze_attack(plain, det)
    report = evaluate({"m": digits_model}, digits, attacks=[plain, adaptive], defenses=[det], device="cpu")

    def value(metric, attack):
        return report.value("m", metric, attack=attack.label, detector="squeeze")

    assert value("detection_rate", adaptive) < value("detection_rate", plain)
    for a in (plain, adaptive):  # the share both misclassified and undetected, from the same counts
        undetected = value("misclassified_undetected", a)
        assert 0 <= undetected <= 1 - report.value("m", "robust_accuracy", attack=a.label)


def test_defend_adaptive_rows_stand_next_to_the_plain_ones(runner, checkpoint):
    args = ["defend", "--defense", "squeeze", "--attack", "pgd", "--eps", "8/255,32/255", "--adaptive"]
    result = runner.invoke(main, [*args, "--model", str(checkpoint), "-q", "--limit", "120", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["eps"], r["adaptive"]) for r in rows] == [
        ("8/255", False),
        ("8/255", True),
        ("32/255", False),
        ("32/255", True),
    ]
    for r in rows:
        assert 0 <= r["misclassified_undetected"] <= 1 - r["robust_accuracy"] + 1e-12
    plain = runner.invoke(main, [*args[:-1], "--model", str(checkpoint), "-q", "--limit", "120", "--format", "json"])
    plain_rows = json.loads(plain.stdout)
    assert "adaptive" not in plain_rows[0]
    for p, r in zip(plain_rows, rows[::2], strict=True):
        assert p["detection_rate"] == r["detection_rate"] and p["robust_accuracy"] == r["robust_accuracy"]


def test_adaptive_needs_squeeze(runner, checkpoint):
    result = runner.invoke(main, ["defend", "--defense", "distill", "--adaptive", "--model", "small_cnn", "-q"])
    assert result.exit_code == 2
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "--defense squeeze" in errors[0]
