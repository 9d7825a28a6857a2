"""Defense training recipes: adversarial training, noise augmentation, outlier exposure, resume, CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch.utils.data import Subset

from robustood.attacks import build_attack
from robustood.cli import main
from robustood.data import DatasetBundle, stack_dataset
from robustood.defenses import (
    AdversarialTraining,
    NoiseAugmentation,
    OutlierExposure,
)
from robustood.errors import RobustoodError
from robustood.models import build_model
from robustood.recipes import RECIPES, adversarial_recipe, noise_recipe, objective_for, oe_recipe
from robustood.train import TrainConfig, fit


def _robust_accuracy(model, x, y, eps):
    x_adv = build_attack("fgsm", eps=eps)(model, x, y)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def test_fgsm_training_beats_plain_model_at_training_eps(digits, digits_model, digits_tensors):
    eps = 32 / 255
    torch.manual_seed(0)
    model = build_model("small_cnn", digits.info)
    fit(
        model,
        digits,
        TrainConfig(epochs=6, patience=None),
        objective=objective_for("adv:fgsm:32/255", digits),
        device="cpu",
        progress=False,
    )
    x, y = digits_tensors
    plain, trained = _robust_accuracy(digits_model, x, y, eps), _robust_accuracy(model, x, y, eps)
    assert trained > plain + 0.15, (plain, trained)
    with torch.no_grad():
        assert float((model(x).argmax(1) == y).float().mean()) > 0.85  # still a good classifier


@pytest.mark.parametrize("share", [1.0, 0.25])
def test_fused_fgsm_step_equals_attack_then_train(digits, share):
    """The fused FGSM path gives exactly the loss and parameter gradients of generating the examples with
    robustood's FGSM attack and then training on clean + adversarial images."""
    x, y = stack_dataset(Subset(digits.train, range(48)))
    torch.manual_seed(0)
    model = build_model("small_cnn", digits.info)
    fused = AdversarialTraining("fgsm", 16 / 255, weight=0.3, share=share)
    reference = AdversarialTraining("fgsm", 16 / 255, weight=0.3, share=share, fused=False)
    assert fused.fused and not reference.fused
    results = []
    for objective in (fused, reference):
        model.zero_grad(set_to_none=True)
        model.train()
        loss, logits = objective(model, x, y)
        loss.backward()
        results.append((loss.detach(), logits, [p.grad.clone() for p in model.parameters()]))
    (l1, z1, g1), (l2, z2, g2) = results
    assert torch.allclose(l1, l2, atol=1e-6) and torch.allclose(z1, z2, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2, strict=True))
    # the reference is literally (1 - w)·CE(clean) + w·CE(FGSM examples)
    k = round(share * len(x))
    x_adv = build_attack("fgsm", eps=16 / 255)(model, x[:k], y[:k])
    with torch.no_grad():
        expected = 0.7 * F.cross_entropy(model(x), y) + 0.3 * F.cross_entropy(model(x_adv), y[:k])
    assert torch.allclose(l2, expected, atol=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # the attack left the model trainable


def test_resumed_training_ends_with_the_same_weights(digits, tmp_path):
    small = DatasetBundle(digits.info, Subset(digits.train, range(256)), digits.val, digits.test)
    cfg = TrainConfig(epochs=4, patience=None, seed=3)
    objective = objective_for("adv:fgsm:8/255:share=0.5", small)

    def train(state_path=None, on_epoch_end=None):
        torch.manual_seed(0)
        model = build_model("small_cnn", digits.info)
        fit(
            model,
            small,
            cfg,
            objective=objective,
            device="cpu",
            state_path=state_path,
            on_epoch_end=on_epoch_end,
            progress=False,
        )
        return model

    class Interrupted(Exception):
        pass

    def stop_after_2(epoch, record):
        if epoch == 2:
            raise Interrupted

    state = tmp_path / "train.state.pt"
    with pytest.raises(Interrupted):
        train(state, stop_after_2)
    assert state.exists()
    resumed = train(state)
    uninterrupted = train()
    assert not state.exists()
    for (name, a), b in zip(resumed.state_dict().items(), uninterrupted.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_noise_and_oe_objectives_known_answers(digits, digits_model):
    x, y = stack_dataset(Subset(digits.test, range(32)))
    clean = F.cross_entropy(digits_model(x), y)
    # eps = 0 or w = 0: the noise objective is plain cross-entropy
    assert torch.allclose(NoiseAugmentation(eps=0, weight=0.7)(digits_model, x, y)[0], clean, atol=1e-6)
    assert torch.allclose(NoiseAugmentation(eps=8 / 255, weight=0)(digits_model, x, y)[0], clean, atol=1e-6)
    # outlier exposure: mean over ID and OOD images of CE (ID) and alpha·(logsumexp − mean logit) (OOD)
    pool = torch.rand(1, *digits.info.input_shape, generator=torch.Generator().manual_seed(0))
    oe = OutlierExposure(source="natural", alpha=0.5, pool=pool)
    loss, logits = oe(digits_model, x, y)
    z_ood = digits_model(pool.expand(len(x), -1, -1, -1))
    uniform = torch.logsumexp(z_ood, 1) - z_ood.mean(1)
    expected = (F.cross_entropy(digits_model(x), y, reduction="sum") + 0.5 * uniform.sum()) / (2 * len(x))
    assert torch.allclose(loss, expected, atol=1e-5)
    assert torch.allclose(logits, digits_model(x), atol=1e-6)
    noise_ood = OutlierExposure(source="noise").outliers(digits_model, x, y)
    assert noise_ood.shape == x.shape and float(noise_ood.min()) >= 0 and float(noise_ood.max()) <= 1


def test_recipes_are_registered_and_canonical(digits):
    assert isinstance(objective_for("adv:fgsm:2/255", digits), AdversarialTraining)
    assert {"adv", "noise", "oe"} <= set(RECIPES)
    assert adversarial_recipe("fgsm", 2 / 255) == "adv:fgsm:2/255"
    assert adversarial_recipe("PGD", 8 / 255, weight=1, share=0.1, steps=7) == "adv:pgd:8/255:w=1:share=0.1:steps=7"
    assert noise_recipe(8 / 255) == "noise:8/255" and noise_recipe(8 / 255, weight=0.3) == "noise:8/255:w=0.3"
    assert oe_recipe("noise") == "oe:noise" and oe_recipe("adv", eps=4 / 255) == "oe:adv:eps=4/255"
    pgd = objective_for("adv:pgd:8/255:w=1:share=0.1:steps=3", digits)
    assert (pgd.attack, pgd.weight, pgd.share, pgd.steps, pgd.fused) == ("pgd", 1.0, 0.1, 3, False)
    assert isinstance(objective_for("oe:natural", digits).pool, torch.Tensor)


@pytest.mark.parametrize(
    "recipe, match",
    [
        ("adv:fgsm:2/255:w=1.5", "adv-weight"),
        ("adv:fgsm:2/255:w=-0.1", "adv-weight"),
        ("adv:fgsm:2/255:share=0", "adv-share"),
        ("adv:fgsm:8", "eps"),
        ("adv:nope:2/255", "unknown attack"),
        ("adv:fgsm", "attack and an eps"),
        ("adv:pgd:8/255:steps=x", "steps"),
        ("noise:8/255:w=2", "weight"),
        ("oe:ocean", "outlier source"),
        ("oe:noise:beta=1", "options"),
    ],
)
def test_bad_recipes_raise_clear_errors(digits, recipe, match):
    with pytest.raises(RobustoodError, match=match):
        objective_for(recipe, digits)
    with pytest.raises(RobustoodError):
        AdversarialTraining(weight=1.01)


def test_train_cli_adversarial_names_the_recipe():
    result = CliRunner().invoke(
        main,
        [
            *("train", "--adversarial", "fgsm", "--eps", "4/255", "--adv-share", "0.5", "--epochs", "1"),
            *("--device", "cpu", "--quiet", "--format", "json"),
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["recipe"] == "adv:fgsm:4/255:share=0.5" and row["source"] == "trained"
    assert "adv_fgsm_4_255_share_0.5" in row["checkpoint"]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--adversarial", "fgsm", "--adv-weight", "1.5"],
        ["train", "--adversarial", "fgsm", "--adv-weight", "-0.5"],
        ["train", "--adversarial", "fgsm", "--adv-share", "0"],
        ["train", "--adversarial", "fgsm", "--eps", "8"],
        ["train", "--adversarial", "fgsm", "--noise", "8/255"],
        ["train", "--noise", "2"],
        ["train", "--eps", "2/255"],
        ["train", "--outlier-exposure", "ocean"],
        ["train", "--recipe", "adv:fgsm:2/255:w=3"],
        ["train", "--adv-weight", "0.3"],
        ["train", "--outlier-exposure", "noise", "--adv-weight", "0.3"],
        ["train", "--noise", "8/255", "--adv-share", "0.5"],
    ],
)
def test_train_cli_bad_input_exits_2_with_one_error_line(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert sum(line.startswith("Error:") for line in result.output.splitlines()) == 1
