"""Every pytorch-ood post-hoc detector robustood names equals pytorch-ood used directly, on digits."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from robustood.data import stack_dataset
from robustood.detectors import fit_detectors, make_detector


def _maps(model):
    return lambda x: model.features(x)[:, :, None, None]


def _head_on_maps(model):
    return lambda m: model.head(m.flatten(1))


def _direct(name, model):
    """pytorch-ood's own object for ``name``, built the way its documentation shows."""
    from pytorch_ood import detector as d

    w, b = model.head.weight.detach(), model.head.bias.detach()
    return {
        "entropy": lambda: d.Entropy(model),
        "gen": lambda: d.GEN(model, gamma=0.1),
        "klmatching": lambda: d.KLMatching(model),
        "dice": lambda: d.DICE(model.features, w=w, b=b, p=0.7),
        "she": lambda: d.SHE(model.features, model.head),
        "fdbd": lambda: d.fDBD(model.features, model.head),
        "nnguide": lambda: d.NNGuide(model.features, model.head, k=10),
        "nci": lambda: d.NCI(model.features, model.head, alpha=0.0),
        "rmd": lambda: d.RMD(model.features),
        "lts": lambda: d.LTS(model.features, model.head, p=0.05),
        "ash": lambda: d.ASH(_maps(model), _head_on_maps(model), variant="ash-s", percentile=0.65),
        "react": lambda: d.ReAct(_maps(model), _head_on_maps(model), percentile=0.9),
        "scale": lambda: d.SCALE(_maps(model), _head_on_maps(model), percentile=0.65),
        "vra": lambda: d.VRA(_maps(model), _head_on_maps(model)),
        "gradnorm": lambda: d.GradNorm(model, temperature=1.0),
    }[name]()


NAMES = ["entropy", "gen", "klmatching", "dice", "she", "fdbd", "nnguide", "nci", "rmd", "lts", "ash", "react",
         "scale", "vra", "gradnorm"]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_named_detector_equals_pytorch_ood(name, digits, digits_model):
    model = digits_model
    x, _ = stack_dataset(digits.test)
    x = x[:64]
    direct = _direct(name, model)
    if direct.requires_fit:
        direct.fit(DataLoader(digits.train, batch_size=256))
    with torch.no_grad() if name != "gradnorm" else torch.enable_grad():
        expected = direct.predict(x).detach().float()
    (ours,) = fit_detectors([make_detector(name)], model, digits.train, device="cpu")
    got = ours.score(model, x).float()
    assert got.shape == (64,)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # and through the shared forward pass of the engine
    from robustood.detectors import score_batch

    (shared,), _ = score_batch(model, x, [ours])
    torch.testing.assert_close(shared.float(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["ash", "scale", "lts"])
def test_shaping_detectors_need_no_training_data(name, digits, digits_model, digits_tensors):
    """ASH, SCALE and LTS only need the model's head: they score own data given without a training split."""
    import robustood as ro

    noise = {"noise": torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))}
    report = ro.evaluate({"m": digits_model}, digits_tensors, detectors=[name], ood=noise)
    with_train = ro.evaluate({"m": digits_model}, digits, detectors=[name], ood=noise)
    assert report.value("m", "auroc", detector=name) == with_train.value("m", "auroc", detector=name)


def test_percentile_given_in_percent_is_refused():
    from robustood.errors import RobustoodError

    with pytest.raises(RobustoodError, match=r"fraction in \[0, 1\]"):
        make_detector("react", percentile=90)


def test_pytorch_ood_object_is_fitted_in_place(digits, digits_model):
    """A pytorch-ood object handed to fit_detectors (not only evaluate) is wrapped and fitted."""
    from pytorch_ood.detector import EnergyBased, KLMatching

    kl = KLMatching(None)
    dets = fit_detectors([EnergyBased(None), kl], digits_model, digits.train, device="cpu")
    assert [d.name for d in dets] == ["energybased", "klmatching"]
    assert all(d.is_fitted for d in dets)
    x, _ = stack_dataset(digits.test)
    torch.testing.assert_close(dets[1].score(digits_model, x[:8]), kl.predict_logits(digits_model(x[:8]).detach()))
