"""Attacks: budgets, analytic answers on linear models, equality with ART, targets, DDN, metrics."""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustood.attacks import (
    ATTACKS,
    Attack,
    AttackMetrics,
    AttackOutput,
    build_attack,
    parse_attack_spec,
)
from robustood.attacks.base import attack_mode
from robustood.attacks.gradient import pgd, random_start
from robustood.attacks.metrics import precision_context
from robustood.errors import IncompatibleModelError, RobustoodError
from robustood.evaluate import run_attack
from robustood.rng import Keys

NORMS = ("inf", "2")
TARGETS = (None, 3, "random", "least-likely")


def _supports(name: str, norm: str) -> bool:
    return (math.inf if norm == "inf" else 2.0) in ATTACKS[name].norms


def _norms(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = delta.flatten(1).double()
    return d.abs().amax(1), d.norm(p=2, dim=1)


@pytest.fixture(scope="module")
def batch(digits_tensors):
    x, y = digits_tensors
    return x[:48], y[:48]


# --------------------------------------------------------------------------- a linear binary classifier


class Linear2(nn.Module):
    """Logits ``[0, w·x + b]`` for inputs ``B×1×4×4``: class 1 iff the margin ``w·x + b > 0``."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.lin = nn.Linear(w.numel(), 1)
        with torch.no_grad():
            self.lin.weight.copy_(w.view(1, -1))
            self.lin.bias.fill_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x.flatten(1))
        return torch.cat([torch.zeros_like(z), z], 1)


@pytest.fixture(scope="module")
def linear_case():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, generator=g)
    w[w.abs() < 0.05] = 0.3  # no zero weights: every pixel moves
    x = 0.4 + 0.2 * torch.rand(400, 1, 4, 4, generator=g)  # interior: steps ≤ 0.1 never clip at 0 or 1
    b = -float((x.flatten(1) @ w).median())
    model = Linear2(w, b).eval()
    margin = (x.flatten(1) @ w + b).double()
    y = (margin > 0).long()
    flip = torch.rand(400, generator=g) < 0.1  # some points start misclassified
    y[flip] = 1 - y[flip]
    return model, x, y, w.double(), margin


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["fgsm", "pgd", "bim"])
@pytest.mark.parametrize("eps", [0.01, 0.03, 0.08])
def test_linear_robust_accuracy_is_exact(linear_case, name, norm, eps):
    """On a linear binary classifier the smallest flipping perturbation is |margin| / ‖w‖_dual."""
    model, x, y, w, margin = linear_case
    if norm == "2" and eps > 0.03:
        eps = eps * 4  # L2 budgets are larger; still inside the interior for this w
    dual = w.abs().sum() if norm == "inf" else w.norm()
    correct = (margin > 0).long() == y
    expected = float((correct & (margin.abs() / dual > eps)).double().mean())
    # an L2 random start keeps a component orthogonal to w that projection only shrinks, so
    # PGD-L2 reaches the exact optimum from the clean point; L∞ coordinates saturate at ±eps
    atk = build_attack(name, eps=eps, norm=norm, steps=None if name == "fgsm" else 20, random_start=norm == "inf")
    result = run_attack(model, (x, y), atk, device="cpu", progress=False)
    assert result.robust_accuracy == pytest.approx(expected, abs=1e-12)
    assert result.clean_accuracy == pytest.approx(float(correct.double().mean()), abs=1e-12)


def test_linear_metrics_by_hand(linear_case):
    """FGSM-L∞ on the linear model: every metric follows from the margins."""
    model, x, y, w, margin = linear_case
    eps = 0.03
    l1 = w.abs().sum()
    result = run_attack(model, (x, y), build_attack("fgsm", eps=eps), device="cpu", batch_size=64, progress=False)
    correct = (margin > 0).long() == y
    # FGSM moves every margin by eps·‖w‖₁ towards (correct) or away from (wrong) the boundary
    toward = torch.where(y == 1, -1.0, 1.0).double()
    new_margin = margin + toward * eps * l1
    p_true = torch.sigmoid(torch.where(y == 1, margin, -margin))
    p_true_adv = torch.sigmoid(torch.where(y == 1, new_margin, -new_margin))
    flipped = correct & (margin.abs() < eps * l1)
    assert result.n == 400
    assert result.success_rate == pytest.approx(float(flipped.sum()) / float(correct.sum()), abs=1e-12)
    assert result.robust_accuracy == pytest.approx(float((correct & ~flipped).double().mean()), abs=1e-12)
    assert result.confidence_drop == pytest.approx(float((p_true - p_true_adv).mean()), abs=1e-5)
    assert result.linf_mean == pytest.approx(eps, abs=1e-6) and result.linf_max == pytest.approx(eps, abs=1e-6)
    assert result.l2_mean == pytest.approx(eps * 4, abs=1e-5)  # 16 pixels, each moved by eps
    assert result.mean_iterations == 1.0
    assert result.images_per_second > 0 and result.seconds > 0


def test_pgd_iterations_to_success_by_hand(linear_case):
    """Without a random start, PGD-L∞ with step α flips a point after ceil(|m| / (α‖w‖₁)) steps."""
    model, x, y, w, margin = linear_case
    eps, alpha, steps = 0.05, 0.005, 20
    l1 = w.abs().sum()
    atk = build_attack("pgd", eps=eps, steps=steps, step_size=alpha, random_start=False)
    result = run_attack(model, (x, y), atk, device="cpu", progress=False)
    correct = (margin > 0).long() == y
    need = torch.ceil(margin.abs() / (alpha * l1))
    success = correct & (margin.abs() < eps * l1)
    assert result.mean_iterations == pytest.approx(float(need[success].mean()), abs=1e-9)


# --------------------------------------------------------------------------- conformance over the registry


@pytest.mark.parametrize("targeted", TARGETS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", list(ATTACKS))
def test_perturbation_within_budget_and_range(digits_model, batch, name, norm, targeted):
    x, y = batch
    eps = 0.1 if norm == "inf" else 0.5
    if not _supports(name, norm):
        with pytest.raises(RobustoodError, match="norm"):
            build_attack(name, eps=eps, norm=norm)
        return
    if targeted is not None and ATTACKS[name].options:  # the AutoAttack family picks its own targets
        with pytest.raises(RobustoodError, match="target"):
            build_attack(name, eps=eps, norm=norm, targeted=targeted)
        return
    extra = {"n_queries": 20} if name == "autoattack" else {}
    # Square keeps the clean input where it found nothing, so it gets enough queries to break some
    steps = None if name == "fgsm" else (100 if name == "square" else 3)
    atk = build_attack(name, eps=eps, norm=norm, steps=steps, targeted=targeted, **extra)
    x_adv = atk(digits_model, x, y, generator=torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert x_adv.grad_fn is None and not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    linf, l2 = _norms(x_adv - x)
    size = linf if norm == "inf" else l2
    assert float(size.max()) <= eps + 1e-6
    assert float(size.max()) > 0  # it did something


@pytest.mark.parametrize("backend", ["native", "art"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_eps_zero_returns_x_without_running_the_attack(digits_model, batch, name, backend, monkeypatch):
    x, y = batch
    if backend == "art" and not ATTACKS[name].art:
        with pytest.raises(RobustoodError, match="no ART backend"):
            build_attack(name, eps=0, backend=backend)
        return
    atk = build_attack(name, eps=0, norm="2" if name == "ddn" else "inf", backend=backend)

    def fail(*args, **kwargs):
        raise AssertionError("eps = 0 must not reach the attack")

    monkeypatch.setattr(type(atk), "_run", fail)
    out = atk.generate(digits_model, x, y)
    assert torch.equal(out.x_adv, x) and out.x_adv is not x
    assert out.first_success is None


@pytest.mark.parametrize("name", list(ATTACKS))
def test_art_backend_at_a_tiny_eps_stays_within_it_and_equals_native(digits_model, batch, name):
    """The ART half of every attack is reached and gives the native result at a budget near 0 (ART's
    AutoPGD and Square are other implementations than AutoAttack's reference: reached, within eps)."""
    x, y = batch
    if not ATTACKS[name].art:
        return  # refused at build time (test_eps_zero_returns_x_without_running_the_attack)
    norm, eps = ("2", 0.01) if name == "ddn" else ("inf", 1 / 255)
    kw = dict(eps=eps, norm=norm, random_start=False, steps=20 if name == "square" else None)
    native = build_attack(name, backend="native", **kw)(digits_model, x, y)
    art = build_attack(name, backend="art", **kw)(digits_model, x, y)
    linf, l2 = _norms(art - x)
    size = l2 if norm == "2" else linf
    assert float(size.max()) <= eps + 1e-6 and float(size.max()) > eps / 2
    if name in ("fgsm", "bim", "pgd", "ddn"):
        assert torch.allclose(native, art, atol=1e-5), float((native - art).abs().max())


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(256, 10)
    )


@pytest.mark.parametrize("backend", ["native", "art"])
@pytest.mark.parametrize("training", [True, False])
def test_model_state_restored_and_no_parameter_gradients(batch, backend, training):
    x, y = batch
    model = _bn_model().train(training)
    frozen = model[0].weight
    frozen.requires_grad_(False)
    stats = model[1].running_mean.clone()
    x_adv = build_attack("pgd", eps=0.1, steps=2, backend=backend)(model, x, y)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    assert not frozen.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "0.weight")
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model[1].running_mean, stats)  # batch-norm statistics untouched
    assert x_adv.grad_fn is None


def _conformance_attack(case: str, model: nn.Module, x: torch.Tensor):
    """An attack per registry entry and backend, and a wrapped ready ART object; with its eps and norm."""
    if case == "art-object":
        from art.attacks.evasion import FastGradientMethod

        from robustood.attacks import ARTAttack
        from robustood.attacks._art import art_estimator

        return ARTAttack(FastGradientMethod(art_estimator(model, x, 10), eps=0.1, eps_step=0.1)), 0.1, math.inf
    name, backend = case.rsplit("-", 1)
    norm, eps = ("2", 0.5) if name == "ddn" else ("inf", 0.1)
    if backend == "art" and not ATTACKS[name].art:
        with pytest.raises(RobustoodError, match="no ART backend"):
            build_attack(name, eps=eps, norm=norm, backend=backend)
        return None, eps, math.inf
    extra = {"n_queries": 20} if name == "autoattack" else {}
    steps = {"fgsm": None, "square": None if backend == "native" else 100}.get(name, 3)  # unbroken: unchanged
    atk = build_attack(name, eps=eps, norm=norm, steps=steps, backend=backend, **extra)
    return atk, eps, atk.norm


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("case", [f"{n}-{b}" for n in ATTACKS for b in ("native", "art")] + ["art-object"])
def test_conformance(batch, case, training):
    """Every attack: same shape, dtype and device, in [0, 1], within eps, no graph, model state restored."""
    x, y = batch
    model = _bn_model()
    atk, eps, norm = _conformance_attack(case, model, x)
    if atk is None:  # no ART backend: refused when built
        return
    model.train(training)
    model[0].weight.requires_grad_(False)
    stats = model[1].running_mean.clone()
    x_adv = atk(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    linf, l2 = _norms(x_adv - x)
    size = linf if math.isinf(norm) else l2
    assert 0 < float(size.max()) <= eps + 1e-6
    assert x_adv.grad_fn is None and not x_adv.requires_grad
    assert all(m.training is training for m in model.modules())
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["0.weight"]
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model[1].running_mean, stats)


def test_attack_inside_no_grad_and_training_loop(digits_model, batch):
    """Usable under torch.no_grad() and in a training step: the batch carries no graph."""
    x, y = batch
    atk = build_attack("pgd", eps=0.1, steps=2)
    with torch.no_grad():
        x_adv = atk(digits_model, x, y)
    assert not torch.equal(x_adv, x)
    loss = nn.functional.cross_entropy(digits_model(atk(digits_model, x, y)), y)
    loss.backward()
    assert all(p.grad is not None for p in digits_model.parameters())
    digits_model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- equality with ART


@pytest.mark.parametrize("targeted", [None, "least-likely"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd"])
def test_native_equals_art(digits_model, batch, name, norm, targeted):
    """Same start, same steps: the native engine gives ART's adversarial examples."""
    x, y = batch
    eps = 8 / 255 if norm == "inf" else 0.5
    kw = dict(eps=eps, norm=norm, targeted=targeted, random_start=False)
    if name != "fgsm":
        kw["steps"] = 5
    native = build_attack(name, backend="native", **kw)(digits_model, x, y)
    art = build_attack(name, backend="art", **kw)(digits_model, x, y)
    assert torch.allclose(native, art, atol=1e-5), float((native - art).abs().max())


@pytest.mark.parametrize("norm", NORMS)
def test_native_pgd_random_start_equals_art_with_same_start(digits_model, batch, norm):
    """Inject ART's own random draw (``random_sphere`` from the same NumPy seed) into the native engine."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.utils import random_sphere

    from robustood.attacks._art import art_estimator

    x, y = batch
    eps = 8 / 255 if norm == "inf" else 0.5
    p = np.inf if norm == "inf" else 2
    np.random.seed(7)
    start = torch.from_numpy(random_sphere(len(x), x[0].numel(), eps, p).reshape(x.shape).astype(np.float32))
    with attack_mode(digits_model), torch.enable_grad():
        native = pgd(digits_model, x, y, eps=eps, step_size=eps / 4, steps=5, norm=float(p), start=start).x_adv
    est = art_estimator(digits_model, x, 10)
    art = ProjectedGradientDescent(
        est, norm=p, eps=eps, eps_step=eps / 4, max_iter=5, num_random_init=1, batch_size=len(x), verbose=False
    )
    np.random.seed(7)
    with attack_mode(digits_model):
        x_art = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    assert torch.allclose(native, x_art, atol=1e-5)


@pytest.mark.parametrize("norm", [math.inf, 2.0])
def test_random_start_distribution(norm):
    """Native starts fill the ball like ART's: L∞ uniform per pixel; L2 radius eps·U^(1/d)."""
    x = torch.full((4000, 1, 2, 2), 0.5)
    eps = 0.2
    delta = random_start(x, eps, norm, torch.Generator().manual_seed(0)) - x
    linf, l2 = _norms(delta)
    if math.isinf(norm):
        assert float(linf.max()) <= eps + 1e-7
        assert float(delta.mean()) == pytest.approx(0, abs=0.005)
        assert float(delta.std()) == pytest.approx(eps / math.sqrt(3), rel=0.03)  # uniform(−eps, eps)
    else:
        assert float(l2.max()) <= eps + 1e-6
        u = (l2 / eps) ** 4  # d = 4 → U uniform on [0, 1]
        assert float(u.mean()) == pytest.approx(0.5, abs=0.02)


def test_seeded_runs_repeat(digits_model, batch):
    x, y = batch
    atk = build_attack("pgd", eps=0.1, targeted="random")
    first = atk.generate(digits_model, x, y, generator=torch.Generator().manual_seed(3))
    again = atk.generate(digits_model, x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.target, again.target)
    torch.manual_seed(0)
    a = atk(digits_model, x, y)
    torch.manual_seed(0)
    assert torch.equal(a, atk(digits_model, x, y))  # no generator: torch's default one


def test_generator_is_honoured(digits_model, batch):
    """The random start comes from the generator passed: same seed, same result; another seed, another."""
    x, y = batch
    atk = build_attack("pgd", eps=0.1, steps=2)
    runs = [atk(digits_model, x, y, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    gen = torch.Generator().manual_seed(1)
    atk(digits_model, x, y, generator=gen)
    assert not torch.equal(runs[0], atk(digits_model, x, y, generator=gen))  # the stream moved on
    targets = [
        build_attack("fgsm", eps=0.1, targeted="random").targets(digits_model, x, y, torch.Generator().manual_seed(s))
        for s in (5, 5, 6)
    ]
    assert torch.equal(targets[0], targets[1]) and not torch.equal(targets[0], targets[2])


def test_generator_on_another_device_is_refused(digits_model, batch):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, y = batch
    with pytest.raises(RobustoodError, match="generator is on cuda"):
        build_attack("pgd", eps=0.1)(digits_model, x, y, generator=torch.Generator("cuda"))


@pytest.mark.parametrize("backend", ["native", "art"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_frozen_and_reusable(digits_model, batch, name, backend):
    x, y = batch
    atk = build_attack(name, eps=0.5, norm="2" if name == "ddn" else "inf", steps=1 if name == "fgsm" else 2)
    atk = dataclasses.replace(atk, backend=backend)
    if backend == "art" and not ATTACKS[name].art:
        with pytest.raises(RobustoodError, match="no ART backend"):
            atk(digits_model, x, y)
        return
    before, state = copy.deepcopy(atk), dict(vars(atk))
    gen = torch.Generator().manual_seed(0)
    first = atk(digits_model, x, y, generator=gen)
    assert atk == before and vars(atk) == state and hash(atk) == hash(before)
    assert torch.equal(first, atk(digits_model, x, y, generator=torch.Generator().manual_seed(0)))
    assert {atk: 1}[before] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        atk.eps = 0.1  # type: ignore[misc]


def test_wraps_a_ready_art_attack(digits_model, batch):
    from art.attacks.evasion import FastGradientMethod

    from robustood.attacks._art import art_estimator

    x, y = batch
    art = FastGradientMethod(art_estimator(digits_model, x, 10), eps=0.05, eps_step=0.05)
    wrapped = build_attack(art)
    assert wrapped.eps == 0.05 and wrapped.label == "FastGradientMethod-linf"
    assert torch.allclose(wrapped(digits_model, x, y), build_attack("fgsm", eps=0.05)(digits_model, x, y), atol=1e-5)


# --------------------------------------------------------------------------- targets and DDN


@pytest.mark.parametrize("targeted", [3, "random", "least-likely"])
def test_targeted_attacks_reach_the_target(digits_model, batch, targeted):
    x, y = batch
    atk = build_attack("pgd", eps=0.5, steps=20, step_size=0.05, targeted=targeted)
    out = atk.generate(digits_model, x, y)
    assert out.target is not None
    if targeted == "random":
        assert bool((out.target != y).all())
    with torch.no_grad():
        pred = digits_model(out.x_adv).argmax(1)
    assert float((pred == out.target).float().mean()) >= 0.95


def test_target_classes_by_name_and_errors(digits):
    names = digits.info.class_names
    assert build_attack("fgsm", eps=0.1, targeted="7", class_names=names).targeted == 7
    with pytest.raises(RobustoodError, match="not in the dataset; classes: 0, 1, 2"):
        build_attack("fgsm", eps=0.1, targeted="cat", class_names=names)
    with pytest.raises(RobustoodError, match="not in the dataset"):
        build_attack("fgsm", eps=0.1, targeted=12, class_names=names)


def test_ddn_finds_smaller_l2_than_fgsm(digits_model, digits_tensors):
    x, y = digits_tensors[0][:64], digits_tensors[1][:64]
    eps = 1.0
    fgsm = build_attack("fgsm", eps=eps, norm="2")(digits_model, x, y)
    ddn = build_attack("ddn", eps=eps, norm="2", steps=40)(digits_model, x, y)
    with torch.no_grad():
        ok = digits_model(x).argmax(1) == y
        fooled_f = ok & (digits_model(fgsm).argmax(1) != y)
        fooled_d = ok & (digits_model(ddn).argmax(1) != y)
    assert int(fooled_d.sum()) >= int(fooled_f.sum()) > 0
    both = fooled_f & fooled_d
    _, l2_f = _norms(fgsm - x)
    _, l2_d = _norms(ddn - x)
    assert float(l2_d[both].mean()) < 0.8 * float(l2_f[both].mean())


@pytest.mark.parametrize("backend", ["native", "art"])
def test_ddn_finds_the_minimal_l2_distance_of_a_linear_classifier(linear_case, backend):
    """For logits ``[0, w·x + b]`` the nearest adversarial point is at L2 distance |w·x + b| / ‖w‖."""
    model, x, _, w, margin = linear_case
    y = (margin > 0).long()  # every input correctly classified
    distance = margin.abs() / w.norm()
    assert float(distance.max()) < 0.4  # inside [0, 1]: the closed form holds
    atk = build_attack("ddn", eps=1.0, norm=2, steps=200, backend=backend)
    x_adv = atk(model, x, y)
    with torch.no_grad():
        assert bool((model(x_adv).argmax(1) != y).all())
    _, l2 = _norms(x_adv - x)
    assert bool((l2 >= distance - 1e-5).all())  # nothing adversarial is closer
    far = distance > 1e-3
    assert float((l2[far] / distance[far]).max()) <= 1.1


# --------------------------------------------------------------------------- the metrics accumulator


def _outputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, atk: Attack) -> tuple:
    out = atk.generate(model, x, y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x).float(), out, model(out.x_adv).float()


@pytest.mark.parametrize("targeted", [None, "least-likely"])
def test_attack_metrics_over_batches_equal_one_update(digits_model, digits_tensors, targeted):
    x, y = digits_tensors[0][:100], digits_tensors[1][:100]
    atk = build_attack("pgd", eps=0.3, steps=5, targeted=targeted)
    logits, out, logits_adv = _outputs(digits_model, x, y, atk)
    whole, parts = AttackMetrics(atk, keep=30), AttackMetrics(atk, keep=30)
    whole.update(x, y, logits, out, logits_adv)
    for i in range(0, 100, 16):
        part = slice(i, i + 16)
        sub = AttackOutput(
            out.x_adv[part],
            None if out.target is None else out.target[part],
            None if out.first_success is None else out.first_success[part],
        )
        parts.update(x[part], y[part], logits[part], sub, logits_adv[part])
    a, b = whole.result(1.0), parts.result(1.0)
    assert a.n == b.n == 100 and a.success_rate > 0 and a.mean_iterations > 0
    for key in ("clean_accuracy", "robust_accuracy", "success_rate", "linf_max", "l2_max", "mean_iterations"):
        assert getattr(a, key) == getattr(b, key), key
    for key in ("confidence_drop", "linf_mean", "l2_mean"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-12), key
    assert a.samples is not None and b.samples is not None
    for key in ("x", "y", "x_adv", "pred", "pred_adv", "target"):
        assert np.array_equal(getattr(a.samples, key), getattr(b.samples, key)), key
    assert a.samples.x.shape == (30, 1, 8, 8)


def test_run_attack_equals_attack_metrics_with_keyed_draws(digits_model, digits_tensors):
    """``run_attack`` is the batch loop around :class:`AttackMetrics`, each batch keyed by ``seed``
    and its inputs' indices."""
    x, y = digits_tensors[0][:64], digits_tensors[1][:64]
    atk = build_attack("pgd", eps=8 / 255, steps=3, seed=5, targeted="random")
    metrics = AttackMetrics(atk)
    for i in range(0, 64, 16):
        xb, yb = x[i : i + 16], y[i : i + 16]
        out = atk.generate(digits_model, xb, yb, keys=Keys(5, torch.arange(i, i + 16)))
        with torch.no_grad():
            metrics.update(xb, yb, digits_model(xb).float(), out, digits_model(out.x_adv).float())
    expected = metrics.result(1.0)
    results = [run_attack(digits_model, (x, y), atk, device="cpu", batch_size=16, progress=False) for _ in range(2)]
    for result in results:  # the same numbers, run after run: no state carried between runs
        timing = dict(seconds=result.seconds, images_per_second=result.images_per_second)
        np.testing.assert_equal(dataclasses.asdict(result), dataclasses.asdict(dataclasses.replace(expected, **timing)))


def test_attack_metrics_without_batches_are_nan():
    res = AttackMetrics(build_attack("fgsm", eps=0.1)).result(0.0)
    assert res.n == 0 and math.isnan(res.robust_accuracy) and math.isnan(res.linf_max) and res.samples is None


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # autocast is then a no-op
@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_precision_context_restores_the_memory_format(channels_last, fail):
    """bf16 runs the model channels-last and gives it back in the layout it had, also after an error."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    if torch.cuda.is_available():
        model.cuda()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    weight = model[0].weight
    with contextlib.suppress(KeyError), precision_context("bf16", torch.device("cuda"), model):
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        if fail:
            raise KeyError
    assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert weight.is_contiguous() is not channels_last


# --------------------------------------------------------------------------- package layout


def test_importing_attacks_does_not_import_art():
    code = "import robustood.attacks, sys; assert 'art' not in sys.modules, 'art imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _module_imports(path: Path) -> set[str]:
    """The attack modules a module imports at module level (imports inside functions do not count)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustood.attacks."):
            found.add(node.module.rsplit(".", 1)[1])
    return found


def test_attack_modules_form_layers_without_cycles():
    import robustood.attacks

    root = Path(robustood.attacks.__file__).parent
    graph = {p.stem: _module_imports(p) for p in root.glob("*.py") if p.stem != "__init__"}
    assert graph["base"] == set()
    for family in ("gradient", "ddn"):
        assert graph[family] == {"base"}
    order: list[str] = []
    while len(order) < len(graph):  # topological sort: fails on a cycle
        ready = sorted(m for m in graph if m not in order and graph[m] <= set(order))
        assert ready, f"import cycle among {sorted(set(graph) - set(order))}"
        order += ready


# --------------------------------------------------------------------------- construction and specs


def test_build_attack_defaults_and_label():
    atk = build_attack("PGD", eps="8/255")
    assert isinstance(atk, Attack)
    assert (atk.name, atk.steps, atk.random_start, atk.label) == ("pgd", 10, True, "pgd-linf")
    assert atk.alpha == pytest.approx(2 / 255)
    assert build_attack("bim", eps=0.1).random_start is False
    assert build_attack("fgsm", eps=0.1).alpha == 0.1
    assert build_attack("pgd", eps=0.1, targeted="least-likely").label == "pgd-linf-least-likely"
    assert atk.with_eps(4 / 255).alpha == pytest.approx(1 / 255)
    assert hash(atk) == hash(build_attack("pgd", eps=8 / 255))


def test_parse_attack_spec():
    assert parse_attack_spec("fgsm:2/255") == build_attack("fgsm", eps=2 / 255)
    l2 = parse_attack_spec("pgd:0.5:l2", seed=4)
    assert (l2.norm, l2.eps, l2.seed, l2.label) == (2.0, 0.5, 4, "pgd-l2")
    custom = parse_attack_spec("pgd:8/255:steps=20:step_size=1/255:targeted=least-likely")
    assert (custom.steps, custom.step_size, custom.targeted) == (20, pytest.approx(1 / 255), "least-likely")
    ddn = parse_attack_spec(" DDN : 1 : L2 : Gamma=0.1 : init-norm=0.5 : backend=art : seed=3 ")
    assert ddn == build_attack("ddn", eps=1, norm=2, gamma=0.1, init_norm=0.5, backend="art", seed=3)
    assert parse_attack_spec("pgd:0.1:random_start=no").random_start is False
    assert parse_attack_spec("pgd:0.1:steps=5", steps=7).steps == 5  # the spec wins over defaults


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("pgd", "NAME:EPS"),
        ("", "empty attack"),
        ("pgd:", "empty part"),
        ("pgd:x", "invalid eps"),
        ("pgd:0.1:l2:inf", "NAME:EPS"),
        ("pgd:0.1:bogus=1", "unknown option bogus="),
        ("ddn:0.5:l2:gamma=abc", r"option gamma= of attack 'ddn:0.5:l2:gamma=abc' must be a number, got 'abc'"),
        ("ddn:0.5:l2:init_norm=", "option init_norm= has no value"),
        ("ddn:0.5:l2:init_norm=inf", "init_norm= .* must be a finite number"),
        ("pgd:0.1:step_size=-1", "option step_size= .* must be a positive number"),
        ("pgd:0.1:steps=2.7", "option steps= .* must be a positive integer, got '2.7'"),
        ("pgd:0.1:steps=0", "must be a positive integer"),
        ("pgd:0.1:random_start=maybe", "must be true or false"),
        ("pgd:0.1:steps=3:steps=4", "given twice"),
        ("pgd:0.1:steps=3:l2", "put the arguments first"),
    ],
)
def test_bad_attack_specs(spec, match):
    with pytest.raises(RobustoodError, match=match):
        parse_attack_spec(spec)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(name="cw", eps=0.1), "known attacks: fgsm, bim, pgd, ddn"),
        (dict(name="pgd", eps=-0.1), r"eps must be in \[0, 1\]"),
        (dict(name="pgd", eps=8), "did you mean 8/255"),
        (dict(name="pgd", eps=0.1, norm="1"), "unsupported norm"),
        (dict(name="ddn", eps=0.1), "supports l2"),
        (dict(name="fgsm", eps=0.1, steps=5), "exactly one step"),
        (dict(name="pgd", eps=0.1, backend="jax"), "unknown backend"),
        (dict(name="pgd", eps=0.1, targeted=True), "ambiguous"),
        (dict(name="pgd", eps=0.1, colour="red"), "unknown option"),
        (dict(name="pgd", eps=0.1, steps=2.7), "steps must be a positive integer, got 2.7"),
        (dict(name="pgd", eps=0.1, steps=True), "steps must be a positive integer"),
        (dict(name="pgd", eps=0.1, steps=math.inf), "steps must be a positive integer"),
        (dict(name="pgd", eps=0.1, step_size=math.inf), "step_size must be a finite number"),
        (dict(name="pgd", eps=0.1, step_size="abc"), "step_size must be a number"),
        (dict(name="pgd", eps=0.1, step_size=-1), "step_size must be positive"),
        (dict(name="ddn", eps=0.1, norm=2, gamma=math.nan), "gamma must be a finite number"),
        (dict(name="ddn", eps=0.1, norm=2, init_norm=math.inf), "init_norm must be a finite number"),
        (dict(name="ddn", eps=0.1, norm=2, gamma=1.5), "0 < gamma < 1"),
        (dict(name="pgd", eps=0.1, seed=1.5), "seed must be an integer"),
    ],
)
def test_bad_attack_arguments(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(RobustoodError, match=match):
        build_attack(name, **kwargs)


def test_run_attack_rejects_a_model_with_other_classes(digits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(IncompatibleModelError, match="outputs 3 classes but the dataset has 10"):
        run_attack(model, digits.limited(16), build_attack("fgsm", eps=0.1), device="cpu", progress=False)


def test_run_attack_on_tensors_rejects_labels_beyond_the_model_outputs(digits_tensors):
    """Without a dataset's class list the labels bound the classes: a clear error, not an IndexError."""
    x, y = digits_tensors
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(IncompatibleModelError, match="outputs 3 classes but the labels go up to 9"):
        run_attack(model, (x[:32], y[:32]), build_attack("fgsm", eps=0.1), device="cpu", progress=False)


def test_run_attack_keeps_samples_and_rows(digits_model, digits):
    res = run_attack(
        digits_model, digits.limited(40), build_attack("fgsm", eps=0.1), device="cpu", batch_size=16, keep=20
    )
    assert res.samples is not None and res.samples.x.shape == (20, 1, 8, 8)
    assert (res.samples.target == -1).all()
    row = res.rows()[0]
    assert row["attack"] == "fgsm-linf" and row["eps"] == 0.1 and row["n"] == 40
    assert all(isinstance(v, (int, float, str)) for v in row.values())
    with torch.no_grad():
        pred = digits_model(torch.from_numpy(res.samples.x_adv)).argmax(1).numpy()
    assert (pred == res.samples.pred_adv).all()


def test_art_backend_leaves_numpy_global_stream_alone(digits_model, digits_tensors):
    """ART draws from NumPy's global generator; the run seeds it for the call and restores the caller's stream."""
    import numpy as np

    x, y = digits_tensors[0][:16], digits_tensors[1][:16]
    atk = build_attack("pgd", eps=8 / 255, steps=2, backend="art")
    np.random.seed(5)
    expected = np.random.rand(3)
    np.random.seed(5)
    first = atk(digits_model, x, y, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(np.random.rand(3), expected)
    again = atk(digits_model, x, y, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
