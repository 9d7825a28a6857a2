from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

from robustood.data import (
    DATASETS,
    conform_images,
    load_dataset,
    load_ood,
    stack_dataset,
)
from robustood.errors import DatasetUnavailableError, RobustoodError


def test_digits_shapes_ranges_and_splits(digits):
    info = digits.info
    assert info.input_shape == (1, 8, 8) and info.num_classes == 10
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.test) == 360
    x, y = stack_dataset(digits.test)
    assert x.dtype == torch.float32 and x.shape == (360, 1, 8, 8)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))
    # the normalisation constants are the training split's
    xt, _ = stack_dataset(digits.train)
    assert info.mean[0] == pytest.approx(float(torch.cat([xt, stack_dataset(digits.val)[0]]).mean()), rel=1e-5)


def test_digits_is_deterministic_and_splits_do_not_overlap():
    a, b = load_dataset("digits"), load_dataset("digits")
    for split in ("train", "val", "test"):
        xa, ya = stack_dataset(getattr(a, split))
        xb, yb = stack_dataset(getattr(b, split))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not set(a.train.indices) & set(a.val.indices)
    # another seed moves the validation split, never the test split
    c = load_dataset("digits", seed=1)
    assert c.val.indices != a.val.indices
    assert torch.equal(stack_dataset(c.test)[0], stack_dataset(a.test)[0])


def test_heldout_keeps_first_classes(digits):
    b = load_dataset("digits", heldout=3)
    assert b.info.num_classes == 7 and b.info.key == "digits-h3"
    for split in (b.train, b.val, b.test):
        assert int(stack_dataset(split)[1].max()) == 6
    x, y = stack_dataset(b.heldout_test)
    assert (y == -1).all() and len(x) == int(sum(1 for i in range(len(digits.test)) if digits.test[i][1] >= 7))
    with pytest.raises(RobustoodError, match="K from 1 to 8"):
        load_dataset("digits", heldout=10)


@pytest.mark.parametrize("source", ["noise", "gaussian", "natural"])
def test_synthetic_ood_sources(digits, source):
    ds = load_ood(source, digits, n=50, seed=3)
    x, y = stack_dataset(ds)
    assert x.shape == (50, 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert (y == -1).all()
    again, _ = stack_dataset(load_ood(source, digits, n=50, seed=3))
    other, _ = stack_dataset(load_ood(source, digits, n=50, seed=4))
    assert torch.equal(x, again) and not torch.equal(x, other)
    assert len(load_ood(source, digits)) == len(digits.test)  # default size: the ID test split


def test_noise_is_uniform_and_gaussian_is_centred(digits):
    u, _ = stack_dataset(load_ood("noise", digits, n=2000))
    g, _ = stack_dataset(load_ood("gaussian", digits, n=2000))
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01) and float(u.std()) == pytest.approx(12**-0.5, abs=0.01)
    assert float(g.mean()) == pytest.approx(0.5, abs=0.01)


def test_natural_patches_are_photographs_not_noise(digits):
    x, _ = stack_dataset(load_ood("natural", digits, n=200))
    # neighbouring pixels of photographs correlate strongly; of uniform noise they do not
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    assert float(np.corrcoef(a.numpy(), b.numpy())[0, 1]) > 0.5


def test_heldout_source_needs_matching_bundle(digits):
    with pytest.raises(RobustoodError, match="heldout=3"):
        load_ood("heldout:3", digits)
    b = load_dataset("digits", heldout=3)
    assert len(load_ood("heldout:3", b)) == len(b.heldout_test)
    assert len(load_ood("heldout:3", b, n=5)) == 5


@pytest.mark.parametrize("bad", ["heldout:x", "heldout:0", "bogus"])
def test_bad_ood_sources(digits, bad):
    with pytest.raises(RobustoodError):
        load_ood(bad, digits)


def test_zero_sized_ood_set_is_an_error(digits):
    with pytest.raises(RobustoodError, match="at least one"):
        load_ood("noise", digits, n=0)


def test_conform_images_converts_channels_and_size():
    rgb = torch.rand(4, 3, 32, 32)
    grey = conform_images(rgb, (1, 8, 8))
    assert grey.shape == (4, 1, 8, 8) and float(grey.min()) >= 0 and float(grey.max()) <= 1
    back = conform_images(torch.full((2, 1, 8, 8), 0.25), (3, 16, 16))
    assert back.shape == (2, 3, 16, 16) and torch.allclose(back, torch.full_like(back, 0.25))
    white = conform_images(torch.ones(1, 3, 4, 4), (1, 4, 4))
    assert torch.allclose(white, torch.ones_like(white))  # luma weights sum to one
    with pytest.raises(RobustoodError):
        conform_images(torch.rand(1, 2, 4, 4), (3, 4, 4))


def test_unknown_dataset_lists_known_names():
    with pytest.raises(RobustoodError, match=r"known: .*digits"):
        load_dataset("imagenet")


@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"digits"}))
def test_torchvision_dataset_offline_names_the_files(name, tmp_path, monkeypatch):
    import robustood.data

    monkeypatch.setattr(robustood.data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-copy")
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset(name, root=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / name) in msg and "put " in msg and "\n" not in msg


def test_torchvision_dataset_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvu, "download_url", no_network)
    monkeypatch.setattr(tvu, "download_and_extract_archive", no_network)
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "download_and_extract_archive", no_network)
    with pytest.raises(DatasetUnavailableError, match=r"could not be downloaded .*URLError.*cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_imagefolder_mixed_sizes_resized_once_with_notice(tmp_path, caplog):
    from PIL import Image

    for cls, size in (("a", (10, 12)), ("b", (30, 20))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", size, (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    with caplog.at_level("WARNING", logger="robustood.data"):
        b = load_dataset(f"imagefolder:{tmp_path}")
    assert b.info.input_shape == (3, 32, 32) and b.test[0][0].shape == (3, 32, 32)
    assert sum("--image-size" in r.getMessage() for r in caplog.records) == 1
    assert load_dataset(f"imagefolder:{tmp_path}", image_size=16).test[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("split", ["val", "test"])
def test_imagefolder_train_and_val_or_test_layout(tmp_path, split):
    from PIL import Image

    for part, n in (("train", 4), (split, 2)):
        for cls in ("x", "y"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / part / cls / f"{i}.png")
    b = load_dataset(f"imagefolder:{tmp_path}")
    assert len(b.test) == 4 and len(b.train) + len(b.val) == 8
    assert b.info.class_names == ("x", "y") and b.info.input_shape == (3, 8, 8)


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            arr = rng.integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    b = load_dataset(f"imagefolder:{tmp_path}")  # one shared size: kept (H×W = 20×24)
    assert b.info.class_names == ("cat", "dog") and b.info.input_shape == (3, 20, 24)
    assert len(b.train) + len(b.val) + len(b.test) == 20
    x, _y = b.test[0]
    assert x.shape == (3, 20, 24) and 0 <= float(x.min()) <= float(x.max()) <= 1
    b32 = load_dataset(f"imagefolder:{tmp_path}", image_size=32)
    assert b32.info.input_shape == (3, 32, 32) and b32.test[0][0].shape == (3, 32, 32)
    with pytest.raises(DatasetUnavailableError):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")


def test_limited_cuts_the_test_split(digits):
    assert len(digits.limited(10).test) == 10
    assert digits.limited(None) is digits
    with pytest.raises(RobustoodError):
        digits.limited(0)
