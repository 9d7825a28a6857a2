"""AutoAttack: the exact answer on a linear model, equality with the reference (pyautoattack) sample by
sample, budgets, specs, the worst case over attacks and the gradient-masking warnings.

Tests about agreement with the reference use fewer iterations and queries than the standard
version (the same on both sides): they check the algorithm, not its strength.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from robustood.attacks import ATTACKS, build_attack, parse_attack_spec
from robustood.attacks.apgd import apgd, draw_seed
from robustood.attacks.autoattack import autoattack
from robustood.attacks.fab import fab_targeted
from robustood.attacks.masking import masking_warnings, model_checks
from robustood.attacks.square import square
from robustood.errors import RobustoodError
from robustood.evaluate import evaluate

FAMILY = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "autoattack")
REF_NORM = {math.inf: "Linf", 2.0: "L2"}


@pytest.fixture(scope="module")
def frozen(digits_model):
    """The digits model as the reference gets it (evaluation mode)."""
    return digits_model.eval()


@pytest.fixture(scope="module")
def correct(frozen, digits_tensors):
    """100 correctly classified digits test inputs (the reference attacks only those too)."""
    x, y = digits_tensors
    with torch.no_grad():
        ok = frozen(x).argmax(1) == y
    return x[ok][:100], y[ok][:100]


def _robust(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


# --------------------------------------------------------------------------- a linear 10-class model


class Linear10(nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def test_linear_autoattack_equals_the_closed_form():
    """On a linear model with interior inputs, x is robust at L∞ budget eps iff for every class j ≠ y,
    z_y − z_j > eps·‖w_y − w_j‖₁ (the best perturbation is eps·sign(w_j − w_y), no clipping)."""
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(10, 16, generator=g), 0.3 * torch.randn(10, generator=g)
    x = 0.3 + 0.4 * torch.rand(300, 1, 4, 4, generator=g)  # interior: eps ≤ 0.3 never clips at 0 or 1
    model = Linear10(w, b).eval()
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    y[:20] = (y[:20] + 1) % 10  # some start misclassified
    eps = 0.12
    gap = z.gather(1, y[:, None]) - z  # z_y − z_j
    cost = eps * (w[y][:, None, :] - w[None, :, :]).abs().sum(-1)  # eps·‖w_y − w_j‖₁
    gap.scatter_(1, y[:, None], math.inf)
    exact = (gap > cost).all(1)
    atk = build_attack("autoattack", eps=eps, n_queries=500)
    x_adv = atk(model, x, y, generator=torch.Generator().manual_seed(0))
    got = _robust(model, x_adv, y)
    assert 0.2 < exact.float().mean() < 0.8  # a case with both answers
    assert abs(int(got.sum()) - int(exact.sum())) <= 1
    assert (x_adv - x).abs().max() <= eps + 1e-6


# --------------------------------------------------------------------------- the reference, attack by attack


def _reference(name, model, x, y, eps, norm, seed, n_iter, n_queries):
    pa = pytest.importorskip("pyautoattack")
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    kw = {"eps": eps, "norm": REF_NORM[norm], "seed": seed, "device": "cpu"}
    if name in ("apgd-ce", "apgd-dlr"):
        ref = APGDAttack(model, n_iter=n_iter, loss=name[5:], **kw)
    elif name == "apgd-t":
        ref = APGDAttack_targeted(model, n_iter=n_iter, n_target_classes=9, **kw)
    elif name == "fab-t":
        ref = FABAttack_PT(model, n_iter=n_iter, n_restarts=1, targeted=True, n_target_classes=9, **kw)
    elif name == "square":
        ref = SquareAttack(model, n_queries=n_queries, p_init=0.8, resc_schedule=False, **kw)
    else:
        ref = pa.AutoAttack(model, **kw)
        ref.apgd = APGDAttack(model, n_iter=n_iter, **kw)
        ref.apgd_targeted = APGDAttack_targeted(model, n_iter=n_iter, n_target_classes=9, **kw)
        ref.fab = FABAttack_PT(model, n_iter=n_iter, n_restarts=1, n_target_classes=9, **kw)
        ref.square = SquareAttack(model, n_queries=n_queries, p_init=0.8, resc_schedule=False, **kw)
        return ref.run_standard_evaluation(x, y, batch_size=len(x))[0]
    return ref.perturb(x, y)


def _ours(name, model, x, y, eps, norm, seed, n_iter, n_queries):
    if name in ("apgd-ce", "apgd-dlr", "apgd-t"):
        loss = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted"}[name]
        return apgd(model, x, y, eps=eps, norm=norm, n_iter=n_iter, loss=loss, seed=seed)[0]
    if name == "fab-t":
        return fab_targeted(model, x, y, eps=eps, norm=norm, n_iter=n_iter)[0]
    if name == "square":
        return square(model, x, y, eps=eps, norm=norm, n_queries=n_queries, seed=seed)[0]
    return autoattack(model, x, y, eps=eps, norm=norm, seed=seed, n_iter=n_iter, n_queries=n_queries)[0]


@pytest.mark.parametrize(
    ("name", "norm", "eps"),
    [
        ("apgd-ce", math.inf, 0.1),
        ("apgd-dlr", math.inf, 0.1),
        ("apgd-t", math.inf, 0.1),
        ("fab-t", math.inf, 0.1),
        ("square", math.inf, 0.1),
        ("apgd-ce", 2.0, 0.5),
        ("fab-t", 2.0, 0.5),
        ("square", 2.0, 0.5),
        ("autoattack", math.inf, 0.1),
    ],
)
def test_verdicts_agree_with_the_reference(frozen, correct, name, norm, eps):
    """Sample by sample, each attack's verdict is the reference's (same seed, same iterations), its robust
    accuracy within half a point of the reference's, every perturbation inside the eps ball and [0, 1]."""
    pytest.importorskip("pyautoattack")
    x, y = correct
    seed = draw_seed(torch.Generator().manual_seed(0), x.device)
    n_iter, n_queries = (8 if name in ("fab-t", "autoattack") else 15), 150
    ref = _robust(frozen, _reference(name, frozen, x, y, eps, norm, seed, n_iter, n_queries), y)
    x_adv = _ours(name, frozen, x, y, eps, norm, seed, n_iter, n_queries)
    ours = _robust(frozen, x_adv, y)
    assert 0 < int(ours.sum()) < len(y)  # a case where verdicts can differ
    assert (ours == ref).float().mean() >= 0.99
    assert abs(ours.float().mean() - ref.float().mean()) <= 0.005
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if math.isinf(norm) else delta.norm(dim=1)
    assert size.max() <= eps * (1 + 1e-5) and x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.fixture(scope="module")
def adversarially_trained(digits, tmp_path_factory):
    """A digits CNN trained with PGD at eps 0.1 (so that a real share of inputs is robust at 0.1),
    and 100 of its correctly classified test inputs."""
    from robustood.data import stack_dataset
    from robustood.resolve import resolve_model
    from robustood.train import TrainConfig

    model, _ = resolve_model(
        "adv:pgd:0.1",
        digits,
        seed=0,
        cache=tmp_path_factory.mktemp("adv"),
        config=TrainConfig(epochs=15, seed=0),
        progress=False,
    )
    model.eval()
    x, y = stack_dataset(digits.test)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return model, x[ok][:100], y[ok][:100]


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t", "autoattack"])
def test_verdicts_agree_with_the_reference_on_an_adversarially_trained_model(adversarially_trained, name):
    """The same agreement on a model trained against PGD, where many more inputs survive."""
    pytest.importorskip("pyautoattack")
    model, x, y = adversarially_trained
    eps, norm = 0.1, math.inf
    seed = draw_seed(torch.Generator().manual_seed(0), x.device)
    n_iter, n_queries = (8 if name == "autoattack" else 15), 150
    ref = _robust(model, _reference(name, model, x, y, eps, norm, seed, n_iter, n_queries), y)
    ours = _robust(model, _ours(name, model, x, y, eps, norm, seed, n_iter, n_queries), y)
    assert 0 < int(ours.sum()) < len(y)
    assert (ours == ref).float().mean() >= 0.99
    assert abs(ours.float().mean() - ref.float().mean()) <= 0.005


def test_apgd_t_tries_at_most_the_classes_there_are(frozen, correct):
    x, y = correct
    eps, seed = 0.1, 5
    many = apgd(frozen, x[:30], y[:30], eps=eps, n_iter=5, loss="dlr-targeted", n_target_classes=50, seed=seed)
    nine = apgd(frozen, x[:30], y[:30], eps=eps, n_iter=5, loss="dlr-targeted", n_target_classes=9, seed=seed)
    assert torch.equal(many[1], nine[1])  # 10 classes: 9 targets either way
    with pytest.raises(RobustoodError, match="at least 4 classes"):
        apgd(nn.Linear(4, 3), torch.rand(2, 4), torch.zeros(2, dtype=torch.long), eps=0.1, loss="dlr-targeted")


# --------------------------------------------------------------------------- the Attack objects


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_every_family_attack_stays_in_the_ball_and_the_box(frozen, correct, name, norm):
    x, y = correct[0][:24], correct[1][:24]
    eps = 0.1 if norm == "inf" else 0.5
    steps = {"square": 30}.get(name, 4)
    kw = {"n_queries": 30} if name == "autoattack" else {}
    atk = build_attack(name, eps=eps, norm=norm, steps=steps, **kw)
    x_adv = atk(frozen, x, y, generator=torch.Generator().manual_seed(0))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
    assert size.max() <= eps * (1 + 1e-5) and x_adv.min() >= 0 and x_adv.max() <= 1
    again = atk(frozen, x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_adv, again)  # the call's generator decides every random draw


def test_specs_defaults_and_aliases():
    aa = parse_attack_spec("aa:8/255")
    assert aa.name == "autoattack" and aa.steps == 100 and aa.n_queries == 5000 and aa.n_target_classes == 9
    sq = parse_attack_spec("square:0.5:l2:n_queries=100:p_init=0.3")
    assert sq.steps == 100 and sq.p_init == 0.3 and sq.norm == 2.0
    assert build_attack("square", eps=0.1).steps == 5000 and build_attack("apgd-ce", eps=0.1).steps == 100
    assert parse_attack_spec("apgd-t:0.1:n_target_classes=3:restarts=2").n_target_classes == 3
    assert set(FAMILY) <= set(ATTACKS)
    with pytest.raises(RobustoodError, match="no option restarts"):
        parse_attack_spec("fab-t:0.1:restarts=2")
    with pytest.raises(RobustoodError, match="no ART backend"):
        build_attack("apgd-t", eps=0.1, backend="art")
    with pytest.raises(RobustoodError, match="p_init"):
        parse_attack_spec("square:0.1:p_init=0")


def test_art_backend_runs_apgd_and_square(frozen, correct):
    x, y = correct[0][:16], correct[1][:16]
    for name, steps in (("apgd-ce", 5), ("square", 20)):
        x_adv = build_attack(name, eps=0.1, steps=steps, backend="art")(frozen, x, y)
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


# --------------------------------------------------------------------------- the worst case and the warnings


def test_worst_case_is_the_per_sample_and_of_the_attacks(digits, frozen, tmp_path):
    attacks = ["fgsm:0.1", "pgd:0.1:steps=3", "square:0.1:n_queries=40", "fgsm:0.2"]
    kw = dict(attacks=attacks, limit=80, device="cpu", progress=False, keep=True)
    report = evaluate({"m": frozen}, digits, store=tmp_path / "s.jsonl", **kw)
    survived = [report.attacks["m"][k].samples for k in report.attacks["m"] if k.endswith("@0.1")]
    robust = torch.ones(80, dtype=torch.bool)
    for s in survived:
        robust &= torch.from_numpy(s.pred_adv == s.y)
    assert report.value("m", "robust_accuracy", attack="worst", eps=0.1) == pytest.approx(float(robust.double().mean()))
    assert not [r for r in report.rows if r.attack == "worst" and r.eps == 0.2]  # one attack at 0.2: no worst case
    white = [s for k, s in zip(report.attacks["m"], survived, strict=False) if not k.startswith("square")]
    black_only = torch.ones(80, dtype=torch.bool)
    for s in white:
        black_only &= torch.from_numpy(s.pred_adv == s.y)
    black_only &= torch.from_numpy(survived[-1].pred_adv != survived[-1].y)
    assert report.value("m", "black_box_only", attack="worst", eps=0.1) == pytest.approx(
        float(black_only.double().mean())
    )
    # resumed from the store (per-sample verdicts stored with each attack): the same worst case, no attack rerun
    again = evaluate({"m": frozen}, digits, store=tmp_path / "s.jsonl", **{**kw, "keep": 0})
    assert again.value("m", "robust_accuracy", attack="worst", eps=0.1) == report.value(
        "m", "robust_accuracy", attack="worst", eps=0.1
    )


def test_a_distilled_student_through_its_softmax_raises_masking_warnings(digits, frozen, digits_tensors, tmp_path):
    from robustood.resolve import distilled_pretrained
    from robustood.train import TrainConfig

    _, student, _ = distilled_pretrained(
        digits, "small_cnn", temperature=50, cache=tmp_path, config=TrainConfig(epochs=8, seed=0), progress=False
    )
    softmax = nn.Sequential(student.eval(), nn.Softmax(dim=1)).eval()
    x, y = digits_tensors[0][:128], digits_tensors[1][:128]
    checks = model_checks(softmax, x, y)
    assert checks["probability_outputs"] == 1.0 and checks["zero_gradient_share"] > 0.1
    report = evaluate({"distilled": softmax, "plain": frozen}, digits, attacks=["fgsm:0.1"], limit=64, progress=False)
    codes = {(w["model"], w["code"]) for w in report.meta["warnings"]}
    assert {("distilled", "zero_gradient"), ("distilled", "probabilities")} <= codes
    assert not [c for c in codes if c[0] == "plain"]


def test_warnings_read_off_the_rows():
    from robustood.report import Row

    rows = [
        Row("m", "test", "pgd-linf", 0.1, "robust_accuracy", 0.3),
        Row("m", "test", "pgd-linf", 0.2, "robust_accuracy", 0.4),  # rises with eps
        Row("m", "test", "worst", 0.1, "black_box_only", 0.05),
        Row("m", "test", "", None, "output_change", 0.2),
        Row("ok", "test", "pgd-linf", 0.1, "robust_accuracy", 0.4),
        Row("ok", "test", "pgd-linf", 0.2, "robust_accuracy", 0.1),
        Row("ok", "test", "", None, "output_change", 0.0),
    ]
    warnings = masking_warnings(rows)
    assert sorted(w.code for w in warnings) == ["black_box", "eps_not_monotone", "randomised"]
    assert all(w.model == "m" for w in warnings)
    assert all(" Try: " in w.message for w in warnings)  # each says what to try


# --------------------------------------------------------------------------- the command line


def test_cli_runs_autoattack_and_its_members(runner, checkpoint, tmp_path):
    from robustood.cli import main

    common = ["--model", str(checkpoint), "--quiet", "--device", "cpu", "--limit", "16", "--steps", "3"]
    args = ["attack", "--attack", "aa", "--eps", "0.3", *common, "--format", "json"]
    result = runner.invoke(main, [*args, "--save-adv", str(tmp_path / "adv.npz"), "--plots", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["attack"] == "autoattack-linf" and row["linf_max"] <= 0.3 + 1e-6
    assert (tmp_path / "adv.npz").is_file() and list((tmp_path / "p").glob("*.png"))
    result = runner.invoke(main, ["attack", "--attack", "apgd-ce,square", "--eps", "0.1", *common])
    assert result.exit_code == 0, result.output
    assert [ln.split()[0] for ln in result.stdout.splitlines()[2:4]] == ["apgd-ce-linf", "square-linf"]
    compare = ["compare", "-m", str(checkpoint), "--attack", "apgd-ce,square", "--eps", "0.1", "--detector", "none"]
    compare += ["--limit", "16", "--steps", "3", "-q", "--device", "cpu", "--format", "json"]
    result = runner.invoke(main, compare)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    worst = row["robust_accuracy[worst@0.1]"]
    assert worst <= min(row["robust_accuracy[apgd-ce-linf@0.1]"], row["robust_accuracy[square-linf@0.1]"])
    result = runner.invoke(main, ["attack", "--attack", "apgd-x", "--eps", "0.1", *common])
    assert result.exit_code == 2 and "unknown attack" in result.output


def test_the_cuda_schedule_gives_the_cpu_verdicts(frozen, correct, monkeypatch):
    """On CUDA finished inputs leave every 8 iterations and FAB checks without a graph (no synchronisation per
    iteration); the verdicts are those of the CPU schedule (leave at once, fused FAB passes)."""
    import robustood.attacks.apgd as apgd_module
    import robustood.attacks.fab as fab_module
    import robustood.attacks.square as square_module

    x, y = correct[0][:60], correct[1][:60]
    runs = {}
    for schedule in ("cpu", "cuda"):
        if schedule == "cuda":
            for module in (apgd_module, fab_module, square_module):
                monkeypatch.setattr(module, "compact_every", lambda device: 8)
            monkeypatch.setattr(fab_module, "fuse_passes", lambda device: False)
        runs[schedule] = (
            apgd(frozen, x, y, eps=0.1, n_iter=20, seed=1)[1],
            apgd(frozen, x, y, eps=0.1, n_iter=10, loss="dlr-targeted", n_target_classes=3, seed=1)[1],
            fab_targeted(frozen, x, y, eps=0.1, n_iter=10, n_target_classes=3)[1],
            square(frozen, x, y, eps=0.1, n_queries=100, seed=1),
        )
    cpu, cuda = runs["cpu"], runs["cuda"]
    for a, b in zip(cpu[:3], cuda[:3], strict=True):
        assert torch.equal(a, b) and 0 < int(a.sum()) < len(y)
    assert torch.equal(cpu[3][1], cuda[3][1]) and torch.equal(cpu[3][0], cuda[3][0])  # Square L∞: the same points
