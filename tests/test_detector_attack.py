"""Detector attacks: differentiable scores equal the detectors' own, PGD on a score reaches
closed-form optima, stays in the eps ball and the box, and only ever lowers AUROC."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustood.detectors import fit_detectors, make_detector
from robustood.detectors.attack import DetectorAttack, parse_detector_attack, parse_detector_attacks
from robustood.detectors.differentiable import DIFFERENTIABLE, differentiable_score, is_differentiable
from robustood.errors import RobustoodError
from robustood.evaluate import OOD_METRICS, detector_attack_rows, evaluate, robust_metric

ATTACKABLE = ["msp", "maxlogit", "energy", "odin", "mahalanobis", "vim", "knn"]
SLOW = {"reconstruction": {"epochs": 1}, "feature_reconstruction": {"epochs": 1}}


@pytest.fixture(scope="module")
def fitted(digits, digits_model):
    """Every attackable detector (a wrapped pytorch-ood object among them), fitted on digits."""
    from pytorch_ood.detector import EnergyBased

    names = [*ATTACKABLE, *SLOW]
    dets = [make_detector(n, **SLOW.get(n, {})) for n in names]
    dets.append(make_detector(EnergyBased(None, t=2.0)))
    names.append("wrapped-energy")
    fit_detectors(dets, digits_model, digits.train, device="cpu")
    return dict(zip(names, dets, strict=True))


@pytest.mark.parametrize("name", [*ATTACKABLE, *SLOW, "wrapped-energy"])
def test_differentiable_score_equals_the_detectors_score(name, fitted, digits_model, digits_tensors):
    det = fitted[name]
    x = digits_tensors[0][:48].clone()
    noise = torch.rand(16, *x.shape[1:], generator=torch.Generator().manual_seed(0))
    x = torch.cat([x, noise]).requires_grad_(True)
    expected = det.score(digits_model, x.detach()).float()
    got = differentiable_score(det, digits_model, x)
    assert got.shape == expected.shape == (64,)
    torch.testing.assert_close(got.detach(), expected, rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(got.sum(), x)
    assert torch.isfinite(grad).all() and (grad.flatten(1).abs().sum(1) > 0).all()


def test_odin_gradient_equals_differentiating_through_its_preprocessing(fitted, digits_model, digits_tensors):
    """The sign step is constant almost everywhere: create_graph through it gives the same gradient."""
    det = fitted["odin"]
    eps, t = det.eps, det.temperature
    x = digits_tensors[0][:32].clone().requires_grad_(True)
    logits = digits_model(x) / t
    (g,) = torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1)), x, create_graph=True)
    x_hat = x - eps * g.sign()
    reference = -(digits_model(x_hat) / t).softmax(1).amax(1)
    (want,) = torch.autograd.grad(reference.sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (got,) = torch.autograd.grad(differentiable_score(det, digits_model, x2).sum(), x2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)


def test_squeezing_and_unfitted_detectors_are_refused(digits_model, digits_tensors):
    x = digits_tensors[0][:4]
    with pytest.raises(RobustoodError, match="no differentiable score"):
        differentiable_score(make_detector("squeeze"), digits_model, x)
    assert not is_differentiable(make_detector("squeeze"))
    assert all(is_differentiable(make_detector(n)) for n in DIFFERENTIABLE)
    with pytest.raises(RobustoodError, match="fit"):
        differentiable_score(make_detector("knn"), digits_model, x)


def _linear(seed: int, dominant: bool) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    if dominant:  # class 0 is the argmax everywhere in the box, so its corner is the global optimum
        with torch.no_grad():
            model[1].bias[0] = 50.0
    return model


def _closed_form(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Per class, the largest logit over the L∞ ball ∩ [0, 1] box: w·x + b + Σ max(w·lo, w·hi)."""
    w, b = model[1].weight, model[1].bias
    x0 = x.flatten(1)
    lo, hi = (-x0).clamp(min=-eps), (1 - x0).clamp(max=eps)
    return x0 @ w.T + b + torch.maximum(w[None] * lo[:, None], w[None] * hi[:, None]).sum(-1)


def _inputs() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(120, 1, 8, 8, generator=gen)
    x[:40] = (x[:40] > 0.5).float()  # saturated pixels: the box binds, not the ball
    return x


@pytest.mark.parametrize("spec", ["pgd:8/255", "pgd:32/255", "bim:8/255", "fgsm:4/255"])
def test_attacked_max_logit_reaches_the_closed_form_optimum(spec):
    model, x = _linear(0, dominant=True), _inputs()
    atk = parse_detector_attack(spec)
    x_adv = atk(model, make_detector("maxlogit"), x, raise_score=False, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        best = _closed_form(model, x, atk.eps).amax(1)
        got = model(x_adv).amax(1)
    torch.testing.assert_close(got, best, rtol=0, atol=1e-4)


def test_attacked_max_logit_is_the_optimum_of_its_class_and_never_above_the_bound():
    """A generic linear model: PGD climbs to the corner of the class it ends in, exactly; the
    global bound (max over classes) is never exceeded."""
    model, x = _linear(3, dominant=False), _inputs()
    atk = parse_detector_attack("pgd:16/255")
    x_adv = atk(model, make_detector("maxlogit"), x, raise_score=False, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        per_class = _closed_form(model, x, atk.eps)
        logits = model(x_adv)
    got = logits.amax(1)
    own = per_class.gather(1, logits.argmax(1, keepdim=True)).squeeze(1)
    torch.testing.assert_close(got, own, rtol=0, atol=1e-4)
    assert (got <= per_class.amax(1) + 1e-4).all()
    assert (got >= model(x).amax(1) - 1e-6).all()


@pytest.mark.parametrize("name", [*ATTACKABLE, "reconstruction", "feature_reconstruction"])
@pytest.mark.parametrize(("spec", "norm"), [("pgd:16/255", math.inf), ("pgd:0.5:l2", 2.0)])
@pytest.mark.parametrize("raise_score", [True, False])
def test_attacked_inputs_stay_in_the_ball_and_the_box(name, spec, norm, raise_score, fitted, digits_model):
    det = fitted[name]
    x = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    x[:8] = (x[:8] > 0.5).float()
    atk = parse_detector_attack(spec)
    x_adv, values = atk.run(digits_model, det, x, raise_score=raise_score, generator=torch.Generator().manual_seed(0))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if math.isinf(norm) else delta.norm(dim=1)
    assert (size <= atk.eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    clean = differentiable_score(det, digits_model, x).detach()
    # the best iterate is kept (the clean input among the candidates): never worse than clean
    assert ((values - clean) * (1 if raise_score else -1) >= -1e-5).all()
    torch.testing.assert_close(values, det.score(digits_model, x_adv).float(), rtol=1e-4, atol=1e-5)


def test_attack_is_seeded_and_eps_zero_returns_the_input(fitted, digits_model, digits_tensors):
    det, x = fitted["maxlogit"], digits_tensors[0][:16]
    atk = parse_detector_attack("pgd:8/255:seed=3")
    a = atk(digits_model, det, x, raise_score=True, generator=torch.Generator().manual_seed(1))
    b = atk(digits_model, det, x, raise_score=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    zero = parse_detector_attack("pgd:0")(digits_model, det, x, raise_score=True)
    assert torch.equal(zero, x)
    assert digits_model.training is False and all(p.requires_grad for p in digits_model.parameters())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ddn:1", "use pgd, bim, fgsm"),
        ("pgd", "needs a budget"),
        ("pgd:8/255:targeted=3", "no target class"),
        ("pgd:8/255:backend=art", "native engine"),
        ("pgd:2", "did you mean 2/255"),
        ("pgd:8/255,,pgd:2/255", "empty detector attack"),
        ("pgd:8/255,pgd:8/255", "given twice"),
    ],
)
def test_bad_specs_say_what_to_do(spec, message):
    with pytest.raises(RobustoodError, match=message):
        parse_detector_attacks(spec)


def test_specs_follow_the_attack_grammar():
    a, b, c = parse_detector_attacks(["pgd:8/255,pgd:0.5:l2", "fgsm:2/255"], seed=4)
    assert isinstance(a, DetectorAttack) and a.key == "pgd-linf@8/255" and a.attack.steps == 10
    assert a.attack.random_start and a.seed == 4 and a.attack.alpha == pytest.approx(2.5 * 8 / 255 / 10)
    assert b.key == "pgd-l2@0.5" and b.attack.norm == 2.0
    assert c.attack.steps == 1 and c.attack.alpha == pytest.approx(2 / 255)


# --------------------------------------------------------------------------- the engine


@pytest.fixture(scope="module")
def attacked_report(digits, digits_model):
    return evaluate(
        {"m": digits_model},
        digits,
        detectors=ATTACKABLE,
        ood=["noise", "natural"],
        detector_attacks=["pgd:0", "pgd:2/255", "pgd:8/255,pgd:0.5:l2"],
        limit=60,
        ood_size=60,
        device="cpu",
        progress=False,
        keep_scores=True,
        keep_inputs=True,
    )


def _clean(report, det, set_name, metric):
    return report.value("m", metric, input_set=set_name, detector=det, attack="")


def test_robust_auroc_is_never_above_clean(attacked_report):
    rows = [r for r in attacked_report.rows if r.metric == "robust_auroc"]
    assert len(rows) == len(ATTACKABLE) * 2 * 4
    for r in rows:
        clean = _clean(attacked_report, r.detector, r.input_set, "auroc")
        assert r.value <= clean + 1e-12, r
        for side in ("in", "out"):
            one = attacked_report.value("m", robust_metric("auroc", side), **_where(r))
            assert r.value <= one + 1e-12 and one <= clean + 1e-12
        fpr = attacked_report.value("m", "robust_fpr_at_95_tpr", **_where(r))
        assert fpr >= _clean(attacked_report, r.detector, r.input_set, "fpr_at_95_tpr") - 1e-12
    at8 = [r.value for r in rows if r.eps == pytest.approx(8 / 255)]
    clean = [_clean(attacked_report, r.detector, r.input_set, "auroc") for r in rows if r.eps == pytest.approx(8 / 255)]
    assert sum(at8) < sum(clean) - 0.5  # the attack does real damage at 8/255


def _where(r):
    return {"input_set": r.input_set, "detector": r.detector, "attack": r.attack, "eps": r.eps}


def test_eps_zero_changes_nothing(attacked_report):
    for r in attacked_report.rows:
        if r.attack and r.eps == 0:
            metric = r.metric.removeprefix("robust_").removeprefix("in_").removeprefix("out_")
            assert metric in OOD_METRICS
            assert r.value == _clean(attacked_report, r.detector, r.input_set, metric), r


def test_kept_inputs_and_scores_reproduce_the_rows(attacked_report, digits_model):
    from robustood.detectors import ood_metrics

    kept = attacked_report.attacked["m"]
    scores = attacked_report.scores["m"]
    assert set(kept) == {"id", "noise", "natural"}
    name = "knn@pgd-linf@8/255"
    for set_name in kept:
        x, x_adv = torch.as_tensor(kept[set_name]["x"]), torch.as_tensor(kept[set_name]["x_adv"][name])
        assert x.shape == x_adv.shape == (60, 1, 8, 8)
        assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    m = ood_metrics(kept["id"]["scores"][name], kept["noise"]["scores"][name])
    assert m["auroc"] == pytest.approx(
        attacked_report.value("m", "robust_auroc", input_set="noise", detector="knn", eps=8 / 255, attack="pgd-linf")
    )
    m = ood_metrics(scores["id"]["knn"], kept["noise"]["scores"][name])
    assert m["auroc"] == pytest.approx(
        attacked_report.value(
            "m", "robust_out_auroc", input_set="noise", detector="knn", eps=8 / 255, attack="pgd-linf"
        )
    )


def test_rows_pivot_per_side_and_into_compare_columns(attacked_report):
    rows = detector_attack_rows(attacked_report, "m")
    assert len(rows) == len(ATTACKABLE) * 2 * 4 * 3
    assert [r["side"] for r in rows[:3]] == ["out", "in", "both"]
    assert set(rows[0]) >= {"detector", "ood_set", "attack", "eps", "side", "auroc", "fpr_at_95_tpr"}
    wide = attacked_report.wide(["auroc", "robust_auroc"])[0]
    assert "robust_auroc[maxlogit|noise@pgd-linf@8/255]" in wide
    assert "robust_auroc[vim|natural@pgd-l2@0.5]" in wide


def test_detector_attack_unit_resumes_from_the_store(digits, digits_model, tmp_path):
    kw = dict(
        detectors=["maxlogit"],
        ood=["noise"],
        detector_attacks=["pgd:8/255"],
        limit=30,
        device="cpu",
        progress=False,
        store=tmp_path / "s.jsonl",
    )
    first = evaluate({"m": digits_model}, digits, **kw)
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    again = evaluate({"m": digits_model}, digits, **kw)
    assert (tmp_path / "s.jsonl").read_text().splitlines() == lines
    assert first.rows == again.rows


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detectors": ["maxlogit"], "ood": ["adv:fgsm:8/255"]}, "plain OOD set"),
        ({"detectors": [], "ood": []}, "need detectors"),
        ({"detectors": ["squeeze"], "ood": ["noise"]}, "no differentiable score"),
    ],
)
def test_plan_refuses_what_cannot_be_attacked(digits, digits_model, kwargs, message):
    with pytest.raises(RobustoodError, match=message):
        evaluate({"m": digits_model}, digits, detector_attacks=["pgd:8/255"], limit=10, device="cpu", **kwargs)
