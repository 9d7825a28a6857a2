"""OOD detectors, metrics and the one-pass evaluation: known answers, scikit-learn and pytorch-ood equality."""

from __future__ import annotations

import sys
import types
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from robustood.data import stack_dataset
from robustood.detectors import (
    DETECTORS,
    AdversarialInputs,
    OODDetector,
    ReconstructionDetector,
    calibrate_threshold,
    load_scores,
    make_detector,
    ood_metrics,
    parse_detectors,
    resolve_ood_sets,
    run_ood,
)
from robustood.errors import NotFittedError, RobustoodError

FAST = {"reconstruction": {"epochs": 3}, "feature_reconstruction": {"epochs": 3}, "knn": {"k": 10}}


def _noise(n: int, shape=(1, 8, 8), seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand((n, *shape), generator=gen), torch.full((n,), -1))


# --------------------------------------------------------------------------- metrics


def _sklearn_metrics(s_id: np.ndarray, s_ood: np.ndarray) -> dict[str, float]:
    y = np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))]
    s = np.r_[s_id, s_ood]
    fpr, tpr, _ = roc_curve(y, s)
    p_out, r_out, _ = precision_recall_curve(y, s)
    p_in, r_in, _ = precision_recall_curve(1 - y, -s)
    return {
        "auroc": roc_auc_score(y, s),
        "aupr_out": auc(r_out, p_out),
        "aupr_in": auc(r_in, p_in),
        "fpr_at_95_tpr": fpr[np.argmax(tpr >= 0.95)],
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    s_id = np.round(rng.normal(0.0, 1.0, 300), 1)  # rounding makes ties
    s_ood = np.round(rng.normal(1.0, 1.5, 170), 1)
    ours = ood_metrics(torch.tensor(s_id), s_ood)
    ref = _sklearn_metrics(s_id, s_ood)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert np.isnan(ours["detection_accuracy"])


def test_detection_accuracy_at_threshold():
    m = ood_metrics([0.0, 1.0, 2.0, 3.0], [2.5, 0.5], threshold=1.5)
    # ID kept: 0, 1 (2 of 4); OOD flagged: 2.5 (1 of 2) → 3 of 6 correct
    assert m["detection_accuracy"] == pytest.approx(3 / 6)


def test_separable_and_reversed_are_never_flipped():
    good = ood_metrics([0.0, 0.1, 0.2], [0.5, 0.9])
    assert good["auroc"] == 1.0 and good["aupr_out"] == 1.0 and good["aupr_in"] == 1.0
    assert good["fpr_at_95_tpr"] == 0.0
    bad = ood_metrics([0.5, 0.9], [0.0, 0.1, 0.2])
    assert bad["auroc"] == 0.0 and bad["fpr_at_95_tpr"] == 1.0


def test_calibrate_threshold_keeps_95_percent_of_id():
    val = np.arange(1, 101, dtype=float)  # 1..100
    t = calibrate_threshold(val)
    assert t == pytest.approx(np.quantile(val, 0.95))
    assert np.mean(val <= t) == pytest.approx(0.95)
    with pytest.raises(RobustoodError, match=r"0\.95"):
        calibrate_threshold(val, tpr=95)


def test_metrics_reject_empty_and_nan():
    with pytest.raises(RobustoodError, match="zero samples"):
        ood_metrics([0.1, 0.2], [])
    with pytest.raises(RobustoodError, match="NaN"):
        ood_metrics([0.1, float("nan")], [0.3])


# --------------------------------------------------------------------------- registry and conformance


def test_unknown_detector_lists_known():
    with pytest.raises(RobustoodError, match=r"known detectors: .*energy.*msp"):
        make_detector("nope")
    with pytest.raises(RobustoodError, match="unknown detector 'foo'"):
        parse_detectors(["msp", "energy,foo"])
    assert parse_detectors(["MSP,energy", "msp"]) == ["msp", "energy"]


def test_registry_holds_the_promised_detectors():
    assert {"msp", "maxlogit", "energy", "odin", "mahalanobis", "vim", "knn", "reconstruction"} <= set(DETECTORS)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_conformance(name, digits, digits_model, digits_tensors):
    det = make_detector(name, **FAST.get(name, {}))
    assert isinstance(det, OODDetector) and repr(det).startswith(type(det).__name__ + "(")
    x = digits_tensors[0][:17]
    if det.requires_fit:
        assert not det.is_fitted
        with pytest.raises(NotFittedError, match="fit"):
            det.score(digits_model, x)
        if det.kind == "features":
            with torch.no_grad():
                z = digits_model.features(x)
            with pytest.raises(NotFittedError):
                det.score_cached(digits_model.head(z), z)
    assert det.fit(digits_model, digits.train) is det
    assert det.is_fitted
    scores = det.score(digits_model, x)
    assert scores.shape == (17,) and scores.dtype.is_floating_point
    assert torch.isfinite(scores).all()
    if det.kind != "input":
        with torch.no_grad():
            z = digits_model.features(x)
            cached = det.score_cached(digits_model.head(z), z)
        torch.testing.assert_close(cached, scores, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- run_ood


@pytest.fixture(scope="module")
def full_run(digits, digits_model):
    """Every registry detector, digits test vs noise and natural patches, scores kept."""
    dets = [make_detector(n) for n in sorted(DETECTORS)]
    return run_ood(digits_model, digits, dets, ["noise", "natural"], progress=False, keep_scores=True)


def test_every_detector_flags_noise(full_run):
    rows = [r for r in full_run.rows if r["ood_set"] == "noise"]
    assert {r["detector"] for r in rows} == set(DETECTORS)
    for r in rows:
        assert r["auroc"] > 0.85, r
        assert 0.0 <= r["detection_accuracy"] <= 1.0
        assert r["id_accuracy"] > 0.9
    recon = {r["detector"]: r["auroc"] for r in rows if "reconstruction" in r["detector"]}
    assert min(recon.values()) > 0.97


def test_rows_are_plain_floats_and_match_kept_scores(full_run):
    for r in full_run.rows:
        assert all(isinstance(r[k], float) for k in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"))
        s_id, s_ood = full_run.scores["id"][r["detector"]], full_run.scores[r["ood_set"]][r["detector"]]
        assert r["auroc"] == pytest.approx(roc_auc_score(np.r_[0 * s_id, 0 * s_ood + 1], np.r_[s_id, s_ood]))
        assert r["n_id"] == len(s_id) and r["n_ood"] == len(s_ood)


def test_shared_pass_equals_pytorch_ood_predict(full_run, digits, digits_model, digits_tensors):
    from pytorch_ood.detector import KNN, ODIN, EnergyBased, Mahalanobis, MaxLogit, MaxSoftmax, ViM

    x = digits_tensors[0]
    loader = DataLoader(digits.train, batch_size=256)
    head = digits_model.head
    ref = {
        "msp": MaxSoftmax(digits_model),
        "maxlogit": MaxLogit(digits_model),
        "energy": EnergyBased(digits_model),
        "odin": ODIN(digits_model),
        "mahalanobis": Mahalanobis(digits_model.features).fit(loader),
        "vim": ViM(digits_model.features, d=64, w=head.weight, b=head.bias).fit(loader),
        "knn": KNN(digits_model.features, k=50).fit(loader),
    }
    for name, det in ref.items():
        expected = det.predict(x).detach().double().numpy()
        np.testing.assert_allclose(full_run.scores["id"][name], expected, rtol=1e-4, atol=1e-5, err_msg=name)


def test_thresholds_keep_95_percent_of_validation(full_run):
    assert set(full_run.thresholds) == set(DETECTORS)
    # a threshold is a quantile of ID validation scores, so on ID test most inputs stay below it
    for name, t in full_run.thresholds.items():
        assert np.mean(full_run.scores["id"][name] <= t) > 0.8, name


def test_save_scores_round_trip(full_run, tmp_path):
    for suffix in (".npz", ".csv"):
        path = full_run.save_scores(tmp_path / f"scores{suffix}")
        data = load_scores(path)
        assert set(data["ood_set"]) == {"id", "noise", "natural"}
        for r in full_run.rows:
            sel_id, sel_ood = data["ood_set"] == "id", data["ood_set"] == r["ood_set"]
            assert (data["is_ood"][sel_id] == 0).all() and (data["is_ood"][sel_ood] == 1).all()
            m = ood_metrics(data[r["detector"]][sel_id], data[r["detector"]][sel_ood])
            assert m["auroc"] == pytest.approx(r["auroc"], abs=1e-12)
    with pytest.raises(RobustoodError, match=r"\.npz or \.csv"):
        full_run.save_scores(tmp_path / "scores.txt")


def test_scores_not_kept_by_default(digits, digits_model):
    result = run_ood(digits_model, digits, ["msp"], {"noise": _noise(40)}, progress=False, calibrate=False)
    assert result.scores is None and len(result.rows) == 1
    assert np.isnan(result.rows[0]["detection_accuracy"])
    with pytest.raises(RobustoodError, match="keep_scores"):
        result.save_scores("x.npz")


def test_empty_ood_set_is_refused(digits, digits_model):
    empty = TensorDataset(torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long))
    with pytest.raises(RobustoodError, match="'void' has zero samples"):
        run_ood(digits_model, digits, ["msp"], {"void": empty}, progress=False)


def test_ood_images_of_another_shape_are_converted(digits, digits_model):
    colour = _noise(30, shape=(3, 32, 32))
    result = run_ood(digits_model, digits, ["msp", "mahalanobis"], {"big": colour}, progress=False, calibrate=False)
    assert [r["n_ood"] for r in result.rows] == [30, 30]
    odd = TensorDataset(torch.rand(5, 2, 8, 8), torch.full((5,), -1))
    with pytest.raises(RobustoodError, match="2-channel"):
        run_ood(digits_model, digits, ["msp"], {"odd": odd}, progress=False, calibrate=False)


def test_model_without_features_shares_logits_only(digits, digits_model, digits_tensors):
    plain = nn.Sequential(digits_model.normalize, digits_model.backbone, digits_model.head).eval()
    sets = {"noise": _noise(50)}
    a = run_ood(plain, digits, ["msp", "energy"], sets, progress=False, keep_scores=True, calibrate=False)
    b = run_ood(digits_model, digits, ["msp", "energy"], sets, progress=False, keep_scores=True, calibrate=False)
    np.testing.assert_allclose(a.scores["noise"]["energy"], b.scores["noise"]["energy"], rtol=1e-5)
    with pytest.raises(RobustoodError, match="penultimate features"):
        run_ood(plain, digits, ["msp", "knn"], sets, progress=False)


def test_fitting_detector_used_unfitted_raises(digits_model, digits_tensors):
    for name in ("mahalanobis", "vim", "knn", "reconstruction"):
        with pytest.raises(NotFittedError, match=f"{name}.*fit"):
            make_detector(name).score(digits_model, digits_tensors[0][:4])


def test_adversarial_inputs_are_generated_per_batch(digits, digits_model):
    calls = []

    def shift(model, x, y):  # a stand-in attack: tensors in, tensors out, in [0, 1]
        calls.append(len(x))
        return (x + 0.5 * torch.rand_like(x)).clamp(0, 1)

    source = Subset(digits.test, range(100))
    result = run_ood(
        digits_model, digits, ["msp"], {"adv": AdversarialInputs(shift, source)}, batch_size=32, progress=False
    )
    assert calls[-4:] == [32, 32, 32, 4]  # streamed batch by batch
    assert result.rows[0]["n_ood"] == 100 and result.rows[0]["auroc"] > 0.5


def test_adv_spec_uses_robustood_attacks(digits, digits_model):
    from robustood.attacks import Attack, build_attack

    sets = resolve_ood_sets(["adv:fgsm:2/255", "adv:pgd:64/255:steps=3"], digits, n=64)
    fgsm = sets["adv:fgsm:2/255"]
    assert isinstance(fgsm, AdversarialInputs) and isinstance(fgsm.attack, Attack)
    assert fgsm.attack == build_attack("fgsm", eps=2 / 255)
    assert sets["adv:pgd:64/255:steps=3"].attack == build_attack("pgd", eps=64 / 255, steps=3)
    result = run_ood(digits_model, digits, ["msp"], sets, progress=False, calibrate=False, keep_scores=True)
    rows = {r["ood_set"]: r for r in result.rows}
    assert rows["adv:fgsm:2/255"]["n_ood"] == rows["adv:pgd:64/255:steps=3"]["n_ood"] == 64
    # the scores are MSP of the first 64 test images attacked with robustood's FGSM (deterministic)
    x, y = stack_dataset(Subset(digits.test, range(64)))
    x_adv = build_attack("fgsm", eps=2 / 255)(digits_model, x, y)
    with torch.no_grad():
        expected = -digits_model(x_adv).softmax(1).amax(1).double().numpy()
        clean = -digits_model(x).softmax(1).amax(1).double().numpy()
    np.testing.assert_allclose(result.scores["adv:fgsm:2/255"]["msp"], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, clean)


def _fake_attacks(calls: list[str]):
    """A stand-in for ``robustood.attacks`` with its contract: ``parse_attack_spec(text)(model, x, y) -> x_adv``."""
    module = types.ModuleType("robustood.attacks")

    def parse_attack_spec(text: str):
        calls.append(text)
        eps = float(Fraction(text.split(":")[1]))
        return lambda model, x, y: (x + eps * torch.randn_like(x).sign()).clamp(0, 1)

    module.parse_attack_spec = parse_attack_spec
    return module


def test_adv_spec_follows_the_attacks_contract(digits, digits_model, monkeypatch):
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "robustood.attacks", _fake_attacks(calls))
    sets = resolve_ood_sets(["adv:fake:64/255", "noise"], digits, n=50)
    assert calls == ["fake:64/255"] and isinstance(sets["adv:fake:64/255"], AdversarialInputs)
    result = run_ood(digits_model, digits, ["msp"], sets, progress=False, calibrate=False)
    assert [(r["ood_set"], r["n_ood"]) for r in result.rows] == [("adv:fake:64/255", 50), ("noise", 50)]


def test_adv_spec_without_attacks_module_is_a_clear_error(digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "robustood.attacks", None)  # makes the import fail
    with pytest.raises(RobustoodError, match=r"needs robustood\.attacks"):
        resolve_ood_sets(["adv:fgsm:2/255"], digits)


# --------------------------------------------------------------------------- reconstruction as a pytorch-ood Detector


def test_reconstruction_is_a_pytorch_ood_detector(digits, digits_tensors):
    from pytorch_ood.api import Detector, RequiresFittingException
    from pytorch_ood.metrics import OODMetrics

    from robustood.models import ConvAutoencoder

    torch.manual_seed(0)
    det = ReconstructionDetector(ConvAutoencoder(1), epochs=10)
    assert isinstance(det, Detector)
    x_id = digits_tensors[0]
    with pytest.raises(RequiresFittingException):
        det.predict(x_id)
    assert det.fit(DataLoader(digits.train, batch_size=64, shuffle=True)) is det
    s_id, s_ood = det.predict(x_id), det(_noise(len(x_id)).tensors[0])
    assert s_id.shape == (len(x_id),) and (s_id >= 0).all() and (s_id <= 1).all()
    labels = torch.cat([torch.zeros(len(s_id)), -torch.ones(len(s_ood))]).long()
    assert OODMetrics().update(torch.cat([s_id, s_ood]), labels).compute()["AUROC"] > 0.97
