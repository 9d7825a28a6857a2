"""Your own data: evaluate() on a DataLoader, a Dataset or (x, y) tensors, OOD sets likewise, and the
bundle constructors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import robustood as ro
from robustood.data import DatasetBundle, load_ood
from robustood.errors import RobustoodError


@pytest.fixture(scope="module")
def reference(digits, digits_model):
    """The digits model evaluated on the registered dataset, the numbers every data form must give."""
    return ro.evaluate({"m": digits_model}, digits, attacks=["fgsm:8/255"])


@pytest.mark.parametrize("form", ["tensors", "dataset", "loader"])
def test_every_data_form_gives_the_bundles_numbers(form, reference, digits, digits_model, digits_tensors):
    x, y = digits_tensors
    data = {
        "tensors": (x, y),
        "dataset": TensorDataset(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=7, shuffle=True),
    }[form]
    report = ro.evaluate({"m": digits_model}, data, attacks=["fgsm:8/255"])
    for metric in ("accuracy", "robust_accuracy", "success_rate", "confidence_drop"):
        assert report.value("m", metric) == pytest.approx(reference.value("m", metric), abs=1e-6)
    assert report.value("m", "n", input_set="test") == len(y)


def test_classes_come_from_the_model_when_the_labels_cover_fewer(digits_model, digits_tensors):
    x, y = digits_tensors
    keep = y < 3
    report = ro.evaluate({"m": digits_model}, (x[keep], y[keep]))
    expected = float((digits_model(x[keep]).argmax(1) == y[keep]).float().mean())
    assert report.value("m", "accuracy") == pytest.approx(expected)
    bundle = DatasetBundle.from_tensors(x[keep], y[keep])
    assert bundle.info.num_classes == 3  # without a model: the largest label + 1
    assert DatasetBundle.from_tensors(x[keep], y[keep], num_classes=10).info.num_classes == 10


def test_ood_sets_as_tensors_equal_the_named_source(digits, digits_model):
    named = ro.evaluate({"m": digits_model}, digits, detectors=["msp"], ood=["noise"])
    noise = load_ood("noise", digits, seed=0)
    as_tensor = ro.evaluate({"m": digits_model}, digits, detectors=["msp"], ood={"noise": noise.tensors[0]})
    as_loader = ro.evaluate({"m": digits_model}, digits, detectors=["msp"], ood=[DataLoader(noise, batch_size=5)])
    auroc = named.value("m", "auroc", input_set="noise", detector="msp")
    assert as_tensor.value("m", "auroc", input_set="noise", detector="msp") == auroc
    assert as_loader.value("m", "auroc", input_set="ood0", detector="msp") == auroc


def test_feature_detectors_fit_on_the_given_training_split(digits, digits_model, digits_tensors):
    from robustood.data import stack_dataset

    train = stack_dataset(digits.train)
    bundle = DatasetBundle.from_tensors(*digits_tensors, train=train)
    got = ro.evaluate({"m": digits_model}, bundle, detectors=["knn"], ood=["noise"])
    ref = ro.evaluate({"m": digits_model}, digits.__class__(bundle.info, digits.train, bundle.val, digits.test),
                      detectors=["knn"], ood=["noise"])  # fmt: skip
    assert got.value("m", "auroc", input_set="noise", detector="knn") == pytest.approx(
        ref.value("m", "auroc", input_set="noise", detector="knn")
    )
    with pytest.raises(RobustoodError, match="empty dataset"):
        ro.evaluate({"m": digits_model}, digits_tensors, detectors=["knn"], ood=["noise"])


def test_from_datasets_reads_classes_and_shape(tmp_path):
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    for cls in ("ant", "bee"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (12, 10), (i * 50, 10, 10)).save(tmp_path / cls / f"{i}.png")
    folder = ImageFolder(str(tmp_path), transform=ToTensor())
    bundle = DatasetBundle.from_datasets(folder, train=DataLoader(folder, batch_size=2))
    assert bundle.info.class_names == ("ant", "bee")
    assert bundle.info.input_shape == (3, 10, 12)
    assert len(bundle.train) == 6 and len(bundle.val) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ((torch.rand(4, 1, 8, 8) * 255, torch.zeros(4)), r"in \[0, 1\]"),
        ((torch.rand(4, 1, 8, 8), torch.zeros(3)), "labels must be N = 4"),
        ((torch.rand(4, 8, 8), torch.zeros(4)), "N×C×H×W"),
        ((torch.rand(4, 1, 8, 8), torch.full((4,), 0.5)), "class indices"),
        ([1, 2, 3], "pair"),
        (TensorDataset(torch.rand(3, 2)), "pairs"),
        (TensorDataset(torch.rand(3, 1, 8, 8) - 0.5, torch.zeros(3).long()), "take Normalize out"),
    ],
)
def test_bad_data_gets_one_clear_error(data, message, digits_model):
    with pytest.raises(RobustoodError, match=message):
        ro.evaluate({"m": digits_model}, data)
