from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from robustood.data import DatasetInfo
from robustood.errors import IncompatibleModelError, RobustoodError, UnsafeCheckpointError
from robustood.models import (
    ZOO,
    Classifier,
    ConvAutoencoder,
    Normalize,
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

CIFAR = DatasetInfo("cifar10", (3, 32, 32), tuple("abcdefghij"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.mark.parametrize("arch", list(ZOO))
def test_zoo_models_give_logits_and_features(arch, digits):
    for info in (digits.info, CIFAR):
        model = build_model(arch, info).eval()
        x = torch.rand(2, *info.input_shape)
        logits = model(x)
        assert logits.shape == (2, info.num_classes)
        feats = model.features(x)
        assert feats.dim() == 2 and torch.allclose(model.head(feats), logits)


def test_normalize_is_inside_the_model():
    norm = Normalize((0.5,), (0.25,))
    assert torch.allclose(norm(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))
    with pytest.raises(RobustoodError):
        Normalize((0.5,), (0.0,))


def test_autoencoder_keeps_shape_and_range():
    for shape in ((1, 8, 8), (3, 32, 32), (1, 28, 28)):
        ae = ConvAutoencoder(shape[0])
        with torch.no_grad():
            out = ae(torch.rand(3, *shape))
        assert out.shape == (3, *shape) and float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_round_trip(tmp_path, digits, suffix):
    model = build_model("small_cnn", digits.info).eval()
    path = save_checkpoint(model, tmp_path / f"m{suffix}", digits.info, "small_cnn", recipe="plain", test_accuracy=0.5)
    loaded, meta = load_checkpoint(path)
    assert meta["arch"] == "small_cnn" and meta["recipe"] == "plain" and meta["test_accuracy"] == 0.5
    assert meta["dataset"]["class_names"] == list(digits.info.class_names)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]  # no temp files left


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickled_object_checkpoint_is_refused(tmp_path, monkeypatch, digits):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": build_model("small_cnn", digits.info).state_dict(), "payload": _Evil()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        load_model(path, digits.info)
    assert not (tmp_path / "PWNED").exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(RobustoodError):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED").exists()


def test_bare_state_dict_needs_an_architecture(tmp_path, digits):
    model = build_model("small_cnn", digits.info)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(RobustoodError, match="no robustood metadata"):
        load_checkpoint(tmp_path / "sd.pt")
    loaded, _ = load_checkpoint(tmp_path / "sd.pt", arch="small_cnn", info=digits.info)
    assert isinstance(loaded, Classifier)


def test_load_model_checks_dataset(tmp_path, digits):
    path = save_checkpoint(build_model("small_cnn", digits.info), tmp_path / "d.safetensors", digits.info, "small_cnn")
    model, _ = load_model(path, digits.info)
    assert model(torch.rand(1, 1, 8, 8)).shape == (1, 10)
    with pytest.raises(IncompatibleModelError, match="trained on digits"):
        load_model(path, CIFAR)
    with pytest.raises(RobustoodError, match="neither a zoo name"):
        load_model(tmp_path / "nope.pt", digits.info)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_load_model_accepts_modules_and_torchscript(tmp_path, digits):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    _model, meta = load_model(net, digits.info)
    assert meta["arch"] == "Sequential"
    scripted = torch.jit.script(net)
    scripted.save(str(tmp_path / "m.ts"))
    ts, meta = load_model(tmp_path / "m.ts", digits.info)
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(ts(x), net(x)) and meta["arch"].startswith("torchscript")


def test_wrong_class_count_or_shape_is_a_clear_error(digits):
    with pytest.raises(IncompatibleModelError, match="10 classes"):
        load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), digits.info)
    with pytest.raises(IncompatibleModelError, match=r"does not accept digits images of shape \(1, 8, 8\)"):
        load_model(nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), digits.info)


def test_unknown_zoo_name(digits):
    with pytest.raises(RobustoodError, match="zoo models: small_cnn"):
        build_model("vgg99", digits.info)
