"""Your own model: torchvision / hub / RobustBench architectures with a state_dict, torch.export programs,
any output type, --normalize, the feature hook, pytorch-ood detector objects."""

from __future__ import annotations

import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import robustood as ro
from robustood.cli import main
from robustood.data import IMAGENET_MEAN, IMAGENET_STD, load_dataset, stack_dataset
from robustood.errors import RobustoodError
from robustood.models import Normalize, save_checkpoint
from robustood.models.adapt import AdaptedModel, logits_of, parse_normalize

CPU = ["--device", "cpu", "--quiet", "--format", "json"]


@pytest.fixture(scope="module")
def folder64(tmp_path_factory):
    """A folder of 64×64 RGB images, 3 classes × 4 images (train/ and test/ layout)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images64")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c, cls in enumerate(("cat", "dog", "fox")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
                arr[..., c] //= 4  # classes differ in colour a little
                Image.fromarray(arr).save(root / split / cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory):
    """A torchvision resnet18 for 3 classes with random weights, saved as safetensors and as a torch file."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3).eval()
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    root = tmp_path_factory.mktemp("resnet")
    save_file(state, str(root / "resnet18.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, root / "resnet18.pth")
    return net, root


def _manual_accuracy(net, bundle, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    x, y = stack_dataset(bundle.test)
    with torch.no_grad():
        logits = net(Normalize(mean, std)(x))
    return float((logits.argmax(1) == y).float().mean()), logits


def test_torchvision_state_dict_through_the_api(folder64, resnet18_weights):
    net, root = resnet18_weights
    bundle = load_dataset(f"imagefolder:{folder64}")
    assert bundle.info.input_shape == (3, 64, 64)  # the images' own size
    expected, logits = _manual_accuracy(net, bundle)
    for file in ("resnet18.safetensors", "resnet18.pth"):
        report = ro.evaluate(
            "torchvision:resnet18", f"imagefolder:{folder64}", weights=root / file, attacks=["fgsm:2/255"]
        )
        assert report.value("torchvision:resnet18", "accuracy") == pytest.approx(expected)
        assert 0 <= report.value("torchvision:resnet18", "robust_accuracy") <= expected
    model, meta = ro.resolve.resolve_model("torchvision:resnet18", bundle, weights=root / "resnet18.safetensors")
    x, _ = stack_dataset(bundle.test)
    torch.testing.assert_close(model(x), logits)
    assert meta["arch"] == "torchvision:resnet18"


def test_torchvision_state_dict_through_the_cli(runner, folder64, resnet18_weights):
    net, root = resnet18_weights
    expected, _ = _manual_accuracy(net, load_dataset(f"imagefolder:{folder64}"))
    args = ["attack", "-m", "torchvision:resnet18", "--weights", str(root / "resnet18.safetensors")]
    result = runner.invoke(main, [*args, "-d", f"imagefolder:{folder64}", "--attack", "fgsm", "--eps", "2/255", *CPU])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["model"] == "torchvision:resnet18" and row["clean_accuracy"] == pytest.approx(expected)


def test_weights_for_more_classes_need_num_classes(runner, folder64, tmp_path):
    import torchvision

    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=5).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r5.safetensors"))
    base = ["attack", "-m", "torchvision:resnet18", "--weights", str(tmp_path / "r5.safetensors")]
    base += ["-d", f"imagefolder:{folder64}", "--attack", "fgsm", *CPU]
    result = runner.invoke(main, base)
    assert result.exit_code != 0 and "--num-classes" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, [*base, "--num-classes", "5"])
    assert result.exit_code == 0, result.output
    expected, _ = _manual_accuracy(net, load_dataset(f"imagefolder:{folder64}"))
    assert json.loads(result.stdout)[0]["clean_accuracy"] == pytest.approx(expected)


def test_torchvision_without_weights_and_unknown_names_are_clear(digits):
    with pytest.raises(RobustoodError, match="needs weights"):
        ro.resolve.resolve_model("torchvision:resnet18", digits)
    with pytest.raises(RobustoodError, match="no model 'resnet1'"):
        ro.resolve.resolve_model("torchvision:resnet1", digits, weights="x.safetensors")


def test_pickled_weights_are_refused(tmp_path, digits):
    torch.save({"net": SimpleNamespace(a=1)}, tmp_path / "evil.pt")
    with pytest.raises(RobustoodError, match="refusing to load"):
        ro.resolve.resolve_model("torchvision:resnet18", digits, weights=tmp_path / "evil.pt")


# --------------------------------------------------------------------------- output types, normalisation


class _Wrapped(nn.Module):
    def __init__(self, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x):
        logits = self.net(x)
        if self.kind == "object":
            return SimpleNamespace(logits=logits, hidden_states=None)
        if self.kind == "dict":
            return {"logits": logits, "aux": logits * 0}
        if self.kind == "single":
            return {"out": logits}
        return (logits, logits * 2)


@pytest.mark.parametrize("kind", ["object", "dict", "single", "tuple"])
def test_any_output_type_gives_the_plain_models_numbers(kind, digits, digits_model):
    ref = ro.evaluate({"m": digits_model}, digits, attacks=["fgsm:8/255"], detectors=["knn"], ood=["noise"])
    got = ro.evaluate({"m": _Wrapped(digits_model, kind)}, digits, attacks=["fgsm:8/255"], detectors=["knn"],
                      ood=["noise"])  # fmt: skip
    for metric, where in (("accuracy", {}), ("robust_accuracy", {}), ("auroc", {"detector": "knn"})):
        assert got.value("m", metric, **where) == pytest.approx(ref.value("m", metric, **where), abs=1e-6)


def test_logits_of_refuses_what_it_cannot_read():
    with pytest.raises(RobustoodError, match="keys"):
        logits_of({"a": torch.zeros(1), "b": torch.zeros(1)})
    with pytest.raises(RobustoodError, match="expected logits"):
        logits_of("text")


def test_parse_normalize():
    assert parse_normalize("none") is None
    assert parse_normalize("0.5,0.5,0.5,0.25,0.25,0.25") == ((0.5,) * 3, (0.25,) * 3)
    assert parse_normalize("0.5,0.25", channels=3) == ((0.5,) * 3, (0.25,) * 3)
    assert parse_normalize(([0.1], [0.2])) == ((0.1,), (0.2,))
    for bad in ("0.5", "a,b", "0.5,0", "0.1,0.2,0.3,0.4"):
        with pytest.raises(RobustoodError):
            parse_normalize(bad, channels=3)


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory, digits, digits_model):
    """A local torch.hub directory whose entry builds the (self-normalising) digits architecture, and its weights."""
    root = tmp_path_factory.mktemp("hub")
    (root / "hubconf.py").write_text(
        "dependencies = ['torch']\n"
        "from robustood.data import load_dataset\n"
        "from robustood.models import build_model\n\n"
        "def digits_cnn(num_classes=10, **kw):\n"
        "    info = load_dataset('digits').info\n"
        "    return build_model('small_cnn', info)\n"
    )
    save_file({k: v.contiguous() for k, v in digits_model.state_dict().items()}, str(root / "w.safetensors"))
    return root


def test_self_normalising_hub_model_with_normalize_none(runner, hub_dir, digits, digits_model):
    """The model normalises itself: --normalize none gives its own numbers; the default (the dataset's
    constants in front) normalises twice."""
    expected = ro.evaluate({"m": digits_model}, digits).value("m", "accuracy")
    base = ["attack", "-m", f"hub:{hub_dir}:digits_cnn", "--weights", str(hub_dir / "w.safetensors")]
    base += ["--attack", "fgsm", "--eps", "0", *CPU]
    result = runner.invoke(main, [*base, "--normalize", "none"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["clean_accuracy"] == pytest.approx(expected)
    twice = runner.invoke(main, base)
    assert twice.exit_code == 0, twice.output
    x, y = stack_dataset(digits.test)
    with torch.no_grad():
        pred = digits_model(Normalize(digits.info.mean, digits.info.std)(x)).argmax(1)
    normalised_twice = float((pred == y).float().mean())
    assert normalised_twice != pytest.approx(expected)
    assert json.loads(twice.stdout)[0]["clean_accuracy"] == pytest.approx(normalised_twice)
    bad = runner.invoke(main, [*base, "--normalize", "0.5"])
    assert bad.exit_code == 2 and "as many means as stds" in bad.output


def test_normalize_constants_equal_a_normalize_layer(digits, digits_model):
    mean, std = digits.info.mean, digits.info.std
    bare = nn.Sequential(digits_model.backbone, digits_model.head)  # expects normalised inputs
    got = ro.evaluate({"m": bare}, digits, normalize=f"{mean[0]},{std[0]}").value("m", "accuracy")
    assert got == pytest.approx(ro.evaluate({"m": digits_model}, digits).value("m", "accuracy"))
    with pytest.raises(RobustoodError, match="normalises inside itself"):
        ro.evaluate({"m": digits_model}, digits, normalize="0.5,0.5")


def test_hub_offline_without_a_directory_is_clear(digits):
    with pytest.raises(RobustoodError, match="hub:OWNER/REPO:ENTRY"):
        ro.resolve.resolve_model("hub:nocolon", digits)


def test_hub_without_a_network_is_an_environment_fault(runner, monkeypatch):
    """A GitHub hub model that cannot be fetched is the environment's fault (exit code 1), not the input's."""

    def offline(*args, **kwargs):
        raise RuntimeError("It looks like there is no internet connection and the repo could not be found")

    monkeypatch.setattr(torch.hub, "load", offline)
    result = runner.invoke(main, ["attack", "-m", "hub:owner/repo:entry", "--attack", "fgsm", *CPU])
    assert result.exit_code == 1 and "no internet connection" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- optional sources


def test_timm_and_robustbench_missing_is_clear(digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(RobustoodError, match="pip install timm"):
        ro.resolve.resolve_model("timm:resnet18", digits)
    monkeypatch.setitem(sys.modules, "robustbench", None)
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)
    with pytest.raises(RobustoodError, match="RobustBench"):
        ro.resolve.resolve_model("robustbench:cifar10:Linf:Standard", digits)


def test_robustbench_loads_through_its_own_load_model(digits, digits_model, monkeypatch, tmp_path):
    """RobustBench's download step stubbed: its load_model is called with the parsed names and a model
    directory in the cache; the model normalises itself (no constants put in front)."""
    calls = []

    def load_model(model_name, dataset, threat_model, model_dir):
        calls.append((model_name, dataset, threat_model, model_dir))
        return digits_model

    utils = types.ModuleType("robustbench.utils")
    utils.load_model = load_model
    monkeypatch.setitem(sys.modules, "robustbench", types.ModuleType("robustbench"))
    monkeypatch.setitem(sys.modules, "robustbench.utils", utils)
    model, meta = ro.resolve.resolve_model("robustbench:cifar10:Linf:Standard", digits, cache=tmp_path)
    assert calls == [("Standard", "cifar10", "Linf", str(tmp_path / "robustbench"))]
    assert meta["normalize"] == "none" and meta["arch"] == "robustbench:cifar10:Linf:Standard"
    x, _ = stack_dataset(digits.test)
    torch.testing.assert_close(model(x[:16]), digits_model(x[:16]))


# --------------------------------------------------------------------------- files


def test_export_program_gives_the_modules_numbers(runner, tmp_path, digits, digits_model):
    x = torch.zeros(2, *digits.info.input_shape)
    program = torch.export.export(digits_model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "digits.pt2"
    torch.export.save(program, str(path))
    ref = ro.evaluate({"m": digits_model}, digits, attacks=["fgsm:8/255"])
    got = ro.evaluate({"m": str(path)}, digits, attacks=["fgsm:8/255"])
    for metric in ("accuracy", "robust_accuracy"):
        assert got.value("m", metric) == pytest.approx(ref.value("m", metric), abs=1e-6)
    result = runner.invoke(main, ["attack", "-m", str(path), "--attack", "fgsm", "--eps", "8/255", *CPU])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["model"] == "export:digits.pt2"


def test_checkpoint_by_path_keeps_its_recipe_label(runner, tmp_path, digits, digits_model):
    path = save_checkpoint(
        digits_model, tmp_path / "adv.safetensors", digits.info, "small_cnn", recipe="adv:fgsm:8/255"
    )
    result = runner.invoke(main, ["attack", "-m", str(path), "--attack", "fgsm", "--eps", "0", *CPU])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["model"] == "adv:fgsm:8/255"


def test_bare_state_dict_of_a_zoo_architecture(tmp_path, digits, digits_model):
    save_file({k: v.contiguous() for k, v in digits_model.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(RobustoodError, match="--weights"):
        ro.resolve.resolve_model(str(tmp_path / "bare.safetensors"), digits)
    model, _ = ro.resolve.resolve_model("small_cnn", digits, weights=tmp_path / "bare.safetensors")
    x, _ = stack_dataset(digits.test)
    torch.testing.assert_close(model(x), digits_model(x))


# --------------------------------------------------------------------------- features of any model


def test_knn_on_a_torchvision_model_reads_the_last_linear_input(resnet18_weights, tmp_path):
    """KNN through the feature hook equals pytorch-ood's KNN on the features torchvision's extractor gives."""
    from pytorch_ood.detector import KNN
    from torchvision.models.feature_extraction import create_feature_extractor

    net, _ = resnet18_weights
    gen = torch.Generator().manual_seed(0)
    x_train, x_test, x_ood = (torch.rand(n, 3, 32, 32, generator=gen) for n in (60, 10, 10))
    y_train, y_test = torch.arange(60) % 3, torch.arange(10) % 3
    data = ro.data.DatasetBundle.from_tensors(x_test, y_test, train=(x_train, y_train))
    reports = {
        layer: ro.evaluate(
            {"m": net}, data, detectors=["knn"], ood={"o": x_ood}, keep_scores=True, normalize="none", features=layer
        )
        for layer in (None, "flatten")
    }
    extractor = create_feature_extractor(net, {"flatten": "z"})
    with torch.no_grad():
        z = {k: extractor(v)["z"] for k, v in (("train", x_train), ("id", x_test), ("o", x_ood))}
    knn = KNN(None, k=50).fit_features(z["train"], y_train)  # robustood's default k
    for report in reports.values():
        for name in ("id", "o"):
            np.testing.assert_allclose(
                report.scores["m"][name]["knn"], knn.predict_features(z[name]).numpy(), rtol=1e-4, atol=1e-5
            )
    with pytest.raises(RobustoodError, match="no layer 'layer9'"):
        ro.evaluate({"m": net}, data, detectors=["knn"], ood={"o": x_ood}, features="layer9")


def test_feature_detector_on_a_model_without_linear_layer_is_clear():
    model = AdaptedModel(nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten()))
    with pytest.raises(RobustoodError, match=r"no nn\.Linear"):
        model.features(torch.zeros(1, 1, 8, 8))


def test_pytorch_ood_detector_object_equals_the_named_one(digits, digits_model):
    from pytorch_ood.detector import KNN, EnergyBased

    named = ro.evaluate({"m": digits_model}, digits, detectors=["energy", "knn"], ood=["noise"])
    objects = ro.evaluate({"m": digits_model}, digits, detectors=[EnergyBased(None), KNN(None, k=50)], ood=["noise"])
    for name, obj in (("energy", "energybased"), ("knn", "knn")):
        assert objects.value("m", "auroc", detector=obj) == pytest.approx(named.value("m", "auroc", detector=name))


def test_feature_layer_option_through_the_cli(runner, hub_dir, digits, digits_model):
    """--feature-layer names the node (of the model itself, not of a wrapper) whose output knn reads:
    the small CNN's last ReLU is exactly Classifier.features, so the numbers equal knn on the robustood model."""
    expected = ro.evaluate({"m": digits_model}, digits, detectors=["knn"], ood=["noise"]).value("m", "auroc")
    base = ["ood", "-m", f"hub:{hub_dir}:digits_cnn", "--weights", str(hub_dir / "w.safetensors")]
    base += ["--normalize", "none", "--detector", "knn", "--ood", "noise", *CPU]
    result = runner.invoke(main, [*base, "--feature-layer", "model.backbone.7"])
    assert result.exit_code != 0 and "no layer 'model.backbone.7'" in result.output
    result = runner.invoke(main, [*base, "--feature-layer", "backbone.7"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["auroc"] == pytest.approx(expected)
