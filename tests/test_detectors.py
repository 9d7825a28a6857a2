"""OOD detectors, metrics and the one-pass evaluation: known answers, scikit-learn and pytorch-ood equality."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from robustood.data import stack_dataset
from robustood.detectors import (
    DETECTORS,
    KNN,
    ODIN,
    BaseDetector,
    Energy,
    FeatureReconstruction,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    OODDetector,
    Reconstruction,
    ReconstructionDetector,
    ViM,
    calibrate_threshold,
    detector_labels,
    fit_detectors,
    load_scores,
    make_detector,
    ood_metrics,
    parse_detectors,
    register_detector,
    score_batch,
)
from robustood.errors import NotFittedError, RobustoodError
from robustood.evaluate import run_ood

FAST = {"reconstruction": {"epochs": 2}, "feature_reconstruction": {"epochs": 2}, "knn": {"k": 10}}
#: the OOD detectors (``squeeze`` is an adversarial-input detector, tested on its own in run_ood)
OOD_DETECTORS = sorted(n for n in DETECTORS if n != "squeeze")


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


def _pood(name: str, model: nn.Module):
    """pytorch-ood objects, wrapped as they are."""
    from pytorch_ood.detector import ODIN as PoodODIN
    from pytorch_ood.detector import EnergyBased
    from pytorch_ood.detector import Mahalanobis as PoodMahalanobis

    return {"energybased": EnergyBased(None), "mahalanobis": PoodMahalanobis(None), "odin": PoodODIN(model)}[name]


CONFORMANCE = [*sorted(DETECTORS), "pood:energybased", "pood:mahalanobis", "pood:odin"]


def _make(name: str, model: nn.Module) -> BaseDetector:
    if name.startswith("pood:"):
        return make_detector(_pood(name[5:], model))
    return make_detector(name, **FAST.get(name, {}))


@pytest.mark.parametrize("name", CONFORMANCE)
def test_detector_conformance(name, digits, digits_model, digits_tensors):
    """Every registry entry and wrapped pytorch-ood objects: the interface, fitting, finite scores on the
    batch's device, and (shared-pass detectors) cached = own pass, a batch = its halves."""
    det = _make(name, digits_model)
    assert isinstance(det, BaseDetector) and det.kind in ("logits", "features", "input")
    assert det.name == name.removeprefix("pood:")
    label = DETECTORS[name].label if name in DETECTORS else type(det.detector).__name__
    assert repr(det).startswith(label + "(") and repr(det).endswith(")")
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
    train = Subset(digits.train, range(256)) if "reconstruction" in name else digits.train
    assert det.fit(digits_model, train, "cpu", batch_size=128, progress=False) is det
    assert det.is_fitted
    scores = det.score(digits_model, x)
    assert isinstance(scores, torch.Tensor) and scores.shape == (17,) and scores.dtype.is_floating_point
    assert scores.device == x.device and torch.isfinite(scores).all()
    if det.kind != "input":
        with torch.no_grad():
            z = digits_model.features(x)
            cached = det.score_cached(digits_model.head(z), z)
        torch.testing.assert_close(cached, scores, rtol=1e-5, atol=1e-6)
        halves = torch.cat([det.score(digits_model, x[:8]), det.score(digits_model, x[8:])])
        torch.testing.assert_close(halves, scores, rtol=1e-4, atol=1e-5)  # float rounding of B×D matmuls
    else:
        with pytest.raises(RobustoodError, match="own pass"):
            det.score_cached(digits_model(x), None)


@pytest.mark.parametrize(
    ("cls", "name", "kwargs"),
    [
        (MaxSoftmax, "msp", {"t": 2.0}),
        (MaxLogit, "maxlogit", {}),
        (Energy, "energy", {"t": 3.0}),
        (ODIN, "odin", {"eps": 0.01}),
        (Mahalanobis, "mahalanobis", {}),
        (ViM, "vim", {"d": 8}),
        (KNN, "knn", {"k": 5}),
        (Reconstruction, "reconstruction", {"epochs": 2}),
        (FeatureReconstruction, "feature_reconstruction", {"epochs": 2}),
    ],
)
def test_named_classes_are_the_registry_entries(cls, name, kwargs):
    det = cls(**kwargs)
    ref = make_detector(name, **kwargs)
    assert isinstance(det, OODDetector) and isinstance(ref, OODDetector)
    assert (det.name, det.kind, det.requires_fit, repr(det)) == (ref.name, ref.kind, ref.requires_fit, repr(ref))
    assert det.params == {**DETECTORS[name].defaults, **kwargs} and det.reference == DETECTORS[name].reference
    for key, value in kwargs.items():
        assert getattr(det, key) == value


def test_reprs_are_table_labels():
    assert repr(MaxSoftmax(t=2.0)) == "MaxSoftmax(t=2.0)" and repr(MaxLogit()) == "MaxLogit()"
    assert repr(make_detector("energy")) == "Energy(t=1.0)" and repr(KNN(k=20)) == "KNN(k=20)"
    assert repr(ODIN()) == "ODIN(eps=0.0014, temperature=1000.0)" and repr(ViM()) == "ViM(d=64)"
    assert repr(Reconstruction()) == "Reconstruction(source='image', epochs=20, lr=0.001, train_batch_size=64, seed=0)"
    dets = [MaxSoftmax(), MaxSoftmax(t=2.0), Energy()]
    assert detector_labels(dets) == ["MaxSoftmax(t=1.0)", "MaxSoftmax(t=2.0)", "energy"]


def test_make_detector_wraps_pytorch_ood_objects_and_keeps_detectors():
    from pytorch_ood.detector import EnergyBased
    from pytorch_ood.detector import MaxSoftmax as PoodMaxSoftmax

    energy = make_detector(EnergyBased(None, t=2.0))
    assert isinstance(energy, OODDetector) and (energy.name, energy.kind) == ("energybased", "logits")
    assert "Energy-based" in energy.reference and not energy.requires_fit
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(energy.score_logits(logits), Energy(t=2.0).score_logits(logits), rtol=0, atol=0)
    torch.testing.assert_close(
        make_detector(PoodMaxSoftmax(None)).score_logits(logits), PoodMaxSoftmax.score(logits), rtol=0, atol=0
    )
    assert make_detector(energy) is energy
    squeeze = make_detector("squeeze", bit_depth=2)
    assert make_detector(squeeze) is squeeze and squeeze.bit_depth == 2 and squeeze.kind == "input"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_detector("msp", k=3), "no parameter k; its parameters: t"),
        (lambda: make_detector("maxlogit", t=2.0), "its parameters: none"),
        (lambda: make_detector("squeeze", window=3), "no parameter window"),
        (lambda: make_detector(42), "pytorch-ood Detector, got int"),
        (lambda: make_detector(MaxSoftmax(), t=2.0), "configured already"),
        (lambda: make_detector("knn", k=0), "k ≥ 1"),
        (lambda: make_detector("odin", eps=2), "eps must be in"),
        (lambda: make_detector("reconstruction", source="audio"), "'image' or 'features'"),
        (lambda: OODDetector("squeeze"), "make_detector"),
        (lambda: OODDetector("msp", fitted=True), "fitted=True"),
    ],
)
def test_make_detector_errors_say_what_to_do(call, message):
    with pytest.raises(RobustoodError, match=message):
        call()


def test_fitted_pytorch_ood_object_is_used_as_is(digits, digits_model, digits_tensors):
    from pytorch_ood.detector import Mahalanobis as PoodMahalanobis

    pood = PoodMahalanobis(digits_model.features).fit(DataLoader(digits.train, batch_size=256))
    mu = pood.mu
    wrapped = OODDetector(pood, fitted=True)
    assert wrapped.is_fitted and wrapped.detector_ is pood
    fit_detectors([wrapped], digits_model, digits.train, device="cpu", progress=False)
    assert pood.mu is mu  # not refitted
    ours = make_detector("mahalanobis").fit(digits_model, digits.train)
    x = digits_tensors[0][:32]
    torch.testing.assert_close(wrapped.score(digits_model, x), ours.score(digits_model, x), rtol=1e-4, atol=1e-4)


def test_register_detector_takes_a_name_and_a_factory(digits, digits_model):
    from pytorch_ood.detector import Entropy

    spec = register_detector("MyEntropy", lambda model: Entropy(None), kind="logits", label="Entropy")
    try:
        assert DETECTORS["myentropy"] is spec and parse_detectors("myentropy,msp") == ["myentropy", "msp"]
        det = make_detector("myentropy")
        assert repr(det) == "Entropy()" and det.kind == "logits"
        result = run_ood(digits_model, digits, [det], {"noise": _noise(40)}, progress=False, calibrate=False)
        assert result.rows[0]["detector"] == "myentropy" and result.rows[0]["auroc"] > 0.5
    finally:
        DETECTORS.pop("myentropy")


def test_fit_detectors_shares_one_feature_extraction(digits, digits_model, monkeypatch):
    import robustood.detectors.run as run

    calls = []
    extract = run.extract_features
    monkeypatch.setattr(run, "extract_features", lambda *a, **k: calls.append(1) or extract(*a, **k))
    dets = [make_detector("mahalanobis"), make_detector("vim"), make_detector("knn"), MaxSoftmax()]
    fit_detectors(dets, digits_model, digits.train, device="cpu", progress=False)
    assert calls == [1] and all(d.is_fitted for d in dets)
    fit_detectors(dets, digits_model, digits.train, device="cpu", progress=False)  # fitted ones are kept
    assert calls == [1]


class _Counting(nn.Module):
    """A robustood classifier that counts its forward passes (``features`` or the whole model)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.head, self.calls = model, model.head, 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def test_score_batch_shares_one_forward_pass(digits, digits_model, digits_tensors):
    dets = [MaxSoftmax(), Energy(), make_detector("knn", k=10), make_detector("mahalanobis")]
    fit_detectors(dets, digits_model, digits.train, device="cpu", progress=False)
    counting = _Counting(digits_model).eval()
    x = digits_tensors[0][:40]
    scores, logits = score_batch(counting, x, dets)
    assert counting.calls == 1 and logits.shape == (40, 10)
    for det, s in zip(dets, scores, strict=True):
        torch.testing.assert_close(s, det.score(digits_model, x), rtol=1e-5, atol=1e-6)
    counting.calls = 0
    _, same = score_batch(counting, x, dets[:2], logits=logits)
    assert counting.calls == 0 and same is logits  # logit detectors reuse the caller's logits


def test_importing_detectors_does_not_import_pytorch_ood():
    code = "import sys, robustood.detectors; assert 'pytorch_ood' not in sys.modules, 'imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- run_ood


@pytest.fixture(scope="module")
def full_run(digits, digits_model):
    """Every OOD detector of the registry, digits test vs noise and natural patches, scores kept."""
    dets = [make_detector(n, **({"epochs": 2} if "reconstruction" in n else {})) for n in OOD_DETECTORS]
    return run_ood(digits_model, digits, dets, ["noise", "natural"], progress=False, keep_scores=True)


def test_every_detector_flags_noise(full_run):
    rows = [r for r in full_run.rows if r["ood_set"] == "noise"]
    assert {r["detector"] for r in rows} == set(OOD_DETECTORS)
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
    assert set(full_run.thresholds) == set(OOD_DETECTORS)
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


def test_model_without_features_gets_them_from_its_last_linear_layer(digits, digits_model, digits_tensors):
    """A plain nn.Module's features are the input of its last nn.Linear: here exactly the Classifier's."""
    plain = nn.Sequential(digits_model.normalize, digits_model.backbone, digits_model.head).eval()
    sets = {"noise": _noise(50)}
    dets = ["msp", "energy", "knn"]
    a = run_ood(plain, digits, dets, sets, progress=False, keep_scores=True, calibrate=False)
    b = run_ood(digits_model, digits, dets, sets, progress=False, keep_scores=True, calibrate=False)
    for name in dets:
        np.testing.assert_allclose(a.scores["noise"][name], b.scores["noise"][name], rtol=1e-5, atol=1e-6)
    no_linear = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten()).eval()
    with pytest.raises(RobustoodError, match=r"no nn\.Linear layer"):
        run_ood(no_linear, digits, ["msp", "knn"], sets, progress=False)


def test_run_ood_takes_pytorch_ood_objects(digits, digits_model):
    from pytorch_ood.detector import EnergyBased

    sets = {"noise": _noise(50)}
    dets = ["energy", make_detector(EnergyBased(None))]
    result = run_ood(digits_model, digits, dets, sets, progress=False, keep_scores=True)
    assert [r["detector"] for r in result.rows] == ["energy", "energybased"]
    for name in ("id", "noise"):
        np.testing.assert_array_equal(result.scores[name]["energybased"], result.scores[name]["energy"])
    assert result.rows[0]["auroc"] == result.rows[1]["auroc"]
    assert result.thresholds["energy"] == result.thresholds["energybased"]
    raw = run_ood(digits_model, digits, [EnergyBased(None)], sets, progress=False, calibrate=False)
    assert raw.rows[0]["auroc"] == result.rows[0]["auroc"]


def test_feature_squeezing_is_a_detector_in_run_ood(digits, digits_model):
    result = run_ood(digits_model, digits, ["squeeze", "msp"], {"noise": _noise(60)}, progress=False, keep_scores=True)
    assert [r["detector"] for r in result.rows] == ["squeeze", "msp"]
    scores = result.scores["id"]["squeeze"]
    assert len(scores) == len(digits.test) and scores.min() >= 0 and scores.max() <= 2 + 1e-6
    assert 0.0 <= result.rows[0]["auroc"] <= 1.0


def test_fitting_detector_used_unfitted_raises(digits_model, digits_tensors):
    for name in ("mahalanobis", "vim", "knn", "reconstruction"):
        with pytest.raises(NotFittedError, match=f"{name}.*fit"):
            make_detector(name).score(digits_model, digits_tensors[0][:4])


def test_adv_spec_uses_robustood_attacks(digits, digits_model):
    from robustood.attacks import Attack, build_attack
    from robustood.evaluate.plan import make_plan

    sets = ["adv:fgsm:2/255", "adv:pgd:64/255:steps=3"]
    small = digits.limited(64)
    plan = make_plan(
        small, attacks=[], detectors=["msp"], ood=sets, defenses=[], seed=0, ood_size=None, root=None, download=False
    )
    assert [p.adv_sets for p in plan.passes] == [("adv:fgsm:2/255",), ("adv:pgd:64/255:steps=3",)]
    assert isinstance(plan.passes[0].attack, Attack) and not plan.passes[0].measured
    assert plan.passes[0].attack == build_attack("fgsm", eps=2 / 255)
    assert plan.passes[1].attack == build_attack("pgd", eps=64 / 255, steps=3)
    result = run_ood(digits_model, small, ["msp"], sets, progress=False, calibrate=False, keep_scores=True)
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


# --------------------------------------------------------------------------- reconstruction as a pytorch-ood Detector


def test_reconstruction_is_a_pytorch_ood_detector(digits, digits_tensors):
    from pytorch_ood.api import Detector, RequiresFittingException
    from pytorch_ood.metrics import OODMetrics

    from robustood.models import ConvAutoencoder

    torch.manual_seed(0)
    det = ReconstructionDetector(ConvAutoencoder(1), epochs=3)
    assert isinstance(det, Detector)
    x_id = digits_tensors[0]
    with pytest.raises(RequiresFittingException):
        det.predict(x_id)
    assert det.fit(DataLoader(digits.train, batch_size=64, shuffle=True)) is det
    s_id, s_ood = det.predict(x_id), det(_noise(len(x_id)).tensors[0])
    assert s_id.shape == (len(x_id),) and (s_id >= 0).all() and (s_id <= 1).all()
    labels = torch.cat([torch.zeros(len(s_id)), -torch.ones(len(s_ood))]).long()
    assert OODMetrics().update(torch.cat([s_id, s_ood]), labels).compute()["AUROC"] > 0.97
