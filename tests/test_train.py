from __future__ import annotations

import pytest
import torch

from robustood.errors import RobustoodError
from robustood.inference import accuracy
from robustood.models import build_model
from robustood.resolve import cached_model_path, config_slug, pretrained, resolve_model
from robustood.train import TrainConfig, fit


def test_default_digits_model_reaches_95_percent(digits, digits_model):
    assert accuracy(digits_model, digits.test) >= 0.95


def test_pretrained_is_cached_and_reused(digits, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=2, patience=None)
    model, meta = pretrained(digits, "small_cnn", cache=tmp_path, config=cfg, progress=False)
    path = cached_model_path(digits, "small_cnn", "plain", 0, tmp_path, cfg)
    assert path.exists() and meta["epochs"] == 2 and not path.with_suffix(".state.pt").exists()

    import robustood.train as train_mod

    def boom(*a, **k):
        raise AssertionError("must not retrain")

    monkeypatch.setattr(train_mod, "fit", boom)
    again, meta2 = pretrained(digits, "small_cnn", cache=tmp_path, config=cfg, progress=False)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(again(x), model(x)) and meta2["test_accuracy"] == pytest.approx(meta["test_accuracy"])


def test_cache_key_names_every_setting_that_changes_the_weights(digits, tmp_path):
    def name(recipe="plain", seed=0, config=None):
        return cached_model_path(digits, "small_cnn", recipe, seed, tmp_path, config).name

    assert (
        name()
        == name(config=TrainConfig())
        == name(config=TrainConfig(seed=3))
        == "digits-small_cnn-plain-s0.safetensors"
    )
    assert name(seed=3) == "digits-small_cnn-plain-s3.safetensors"
    assert name(config=TrainConfig(epochs=3)) == "digits-small_cnn-plain-epochs3-s0.safetensors"
    assert name("plain:epochs=3") == name("plain:epochs=3", config=TrainConfig(epochs=7))  # the recipe's epochs win
    assert config_slug(TrainConfig(lr=0.05, optimizer="sgd", patience=None)) == "lr0.05_optimizersgd_patienceNone"
    assert len({name(config=TrainConfig(lr=lr)) for lr in (1e-3, 1e-2, 0.05)}) == 3


def test_models_trained_with_other_settings_are_not_reused(digits, tmp_path):
    one = TrainConfig(epochs=1)
    two = TrainConfig(epochs=2, patience=None)
    _, meta_one = pretrained(digits, "small_cnn", cache=tmp_path, config=one, progress=False)
    _, meta_two = pretrained(digits, "small_cnn", cache=tmp_path, config=two, progress=False)
    assert (meta_one["epochs"], meta_two["epochs"]) == (1, 2)
    assert meta_one["path"] != meta_two["path"] and len(list((tmp_path / "models").glob("*.safetensors"))) == 2


def test_same_seed_same_weights(digits):
    def run():
        torch.manual_seed(0)
        m = build_model("small_cnn", digits.info)
        fit(m, digits, TrainConfig(epochs=2, patience=None, seed=5), progress=False, device="cpu")
        return m.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_interrupted_run_resumes_to_the_same_weights(digits, tmp_path):
    cfg = TrainConfig(epochs=4, patience=None, seed=1)

    def fresh():
        torch.manual_seed(0)
        return build_model("small_cnn", digits.info)

    full = fresh()
    fit(full, digits, cfg, progress=False, device="cpu")

    state = tmp_path / "run.state.pt"
    interrupted = fresh()

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, digits, cfg, state_path=state, on_epoch_end=stop_after_two, progress=False, device="cpu")
    assert state.exists()
    resumed = fresh()
    result = fit(resumed, digits, cfg, state_path=state, progress=False, device="cpu")
    assert len(result.history) == 4 and not state.exists()
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_keeps_the_best_epoch(digits):
    m = build_model("small_cnn", digits.info)
    result = fit(m, digits, TrainConfig(epochs=40, patience=1, lr=0.05, seed=0), progress=False, device="cpu")
    assert result.stopped_early and len(result.history) < 40
    assert result.best_val_accuracy == max(r["val_accuracy"] for r in result.history)
    assert accuracy(m, digits.val) == pytest.approx(result.best_val_accuracy)


@pytest.mark.parametrize(
    "kwargs", [{"epochs": 0}, {"lr": 0}, {"batch_size": 0}, {"optimizer": "rmsprop"}, {"patience": 0}]
)
def test_train_config_validation(kwargs):
    with pytest.raises(RobustoodError):
        TrainConfig(**kwargs)


def test_resolve_model_rejects_unknown_recipe_and_missing_files(digits, tmp_path):
    with pytest.raises(RobustoodError, match="unknown model 'magic:1'"):
        resolve_model("magic:1", digits, cache=tmp_path)
    with pytest.raises(RobustoodError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.pt"), digits, cache=tmp_path)
