"""Real images: FashionMNIST from Debian's ``dataset-fashion-mnist`` package (``realdata`` tier).

Skipped where the package is not installed (``.ci/run`` installs it when it can). Sized for
CI: the small CNN on a 6,000-image training subset for 3 epochs, measured on 1,000 test images.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from robustood.data import DEBIAN_FASHION_MNIST, DatasetBundle, load_dataset, read_idx
from robustood.errors import DatasetUnavailableError

EPS = 0.1
realdata = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist package is not installed (apt-get install dataset-fashion-mnist)",
)


def test_read_idx_checks_magic_and_shape(tmp_path):
    """Runs everywhere: a synthetic IDX file is read; a wrong magic number or shape is refused."""
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in images.shape)
    path = tmp_path / "x-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(header + images.tobytes())
    np.testing.assert_array_equal(read_idx(path, 0x0803, (2, 3, 4)), images)
    with pytest.raises(DatasetUnavailableError, match="expected"):
        read_idx(path, 0x0803, (2, 3, 5))
    with pytest.raises(DatasetUnavailableError, match="magic"):
        read_idx(path, 0x0801, (2, 3, 4))


@pytest.fixture(scope="module")
def fashion():
    full = load_dataset("fashionmnist", download=False)
    return DatasetBundle(
        full.info, Subset(full.train, range(6000)), Subset(full.val, range(1000)), Subset(full.test, range(1000))
    )


@pytest.fixture(scope="module")
def trained(fashion, tmp_path_factory):
    from robustood.resolve import pretrained
    from robustood.train import TrainConfig

    cache = tmp_path_factory.mktemp("fashion-models")
    config = TrainConfig(epochs=3, seed=0)
    kw = dict(seed=0, cache=cache, config=config, progress=False, device="cpu")
    return {recipe: pretrained(fashion, "small_cnn", recipe=recipe, **kw)[0] for recipe in ("plain", f"adv:fgsm:{EPS}")}


@pytest.mark.realdata
@realdata
def test_debian_copy_is_found_without_download():
    b = load_dataset("fashionmnist", download=False)
    assert b.info.input_shape == (1, 28, 28) and b.info.num_classes == 10
    assert len(b.train) + len(b.val) == 60000 and len(b.test) == 10000
    x, y = b.test[0]
    assert x.shape == (1, 28, 28) and 0 <= float(x.min()) <= float(x.max()) <= 1 and int(y) == 9  # ankle boot


@pytest.mark.realdata
@realdata
def test_fgsm_training_raises_robust_accuracy_on_real_images(fashion, trained):
    from robustood import evaluate

    report = evaluate(trained, fashion, attacks=[f"fgsm:{EPS}"], device="cpu")
    plain, adv = "plain", f"adv:fgsm:{EPS}"
    assert report.value(plain, "accuracy") > 0.75
    assert report.value(adv, "accuracy") > 0.6
    assert report.value(adv, "robust_accuracy") > report.value(plain, "robust_accuracy") + 0.1


@pytest.mark.realdata
@realdata
def test_fgsm_per_sample_predictions_agree_with_art(fashion, trained):
    """ART used directly (PyTorchClassifier + FastGradientMethod) and robustood's attack pass give the
    same adversarial images and the same prediction for every test image."""
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    from robustood import evaluate
    from robustood.data import stack_dataset

    model = trained["plain"]
    report = evaluate({"m": model}, fashion, attacks=[f"fgsm:{EPS}"], keep=True, device="cpu")
    (result,) = report.attacks["m"].values()
    x, y = stack_dataset(fashion.test)
    est = PyTorchClassifier(
        model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0)
    )
    x_art = FastGradientMethod(est, eps=EPS, batch_size=256).generate(x.numpy(), y=y.numpy())
    pred_art = est.predict(x_art, batch_size=256).argmax(1)
    np.testing.assert_allclose(result.samples.x_adv, x_art, atol=1e-5)
    assert (result.samples.pred_adv == pred_art).mean() == 1.0
