"""Datasets and OOD sources, by name, as float images in [0, 1].

Every dataset comes as a :class:`DatasetBundle`: a train, a validation and a test
split of ``(image, label)`` pairs, images ``C×H×W`` float32 in [0, 1], plus a
:class:`DatasetInfo` describing shape, classes and the normalisation constants the
model applies *inside* itself (so every epsilon is in pixel units).

The embedded default, ``digits``, is scikit-learn's bundled handwritten digits and
needs no network. torchvision-backed sets (``cifar10``, ``cifar100``, ``svhn``,
``mnist``, ``fashionmnist``, ``imagefolder:PATH``) download into the data dir when
online; offline and without a local copy they raise
:class:`~robustood.errors.DatasetUnavailableError` saying which files to put where.

OOD sources (:func:`load_ood`) are labelled ``-1`` (pytorch-ood's convention: OOD
labels are negative) and always come in the ID images' shape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

from .errors import DatasetUnavailableError, RobustoodError
from .utils import cache_dir, check_seed

__all__ = [
    "DATASETS",
    "OOD_SOURCES",
    "DatasetBundle",
    "DatasetInfo",
    "OODDataset",
    "as_bundle",
    "as_ood_dataset",
    "catalogue",
    "conform_images",
    "data_dir",
    "load_dataset",
    "load_ood",
    "stack_dataset",
]

DATA_ENV = "ROBUSTOOD_DATA_DIR"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    ``input_shape`` is ``(C, H, W)``; ``mean``/``std`` are per-channel constants for
    the model's :class:`~robustood.models.Normalize` layer.
    """

    name: str
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    heldout: int = 0
    fingerprint: str = ""
    """A hash of the files a folder dataset was read from (``""`` for named datasets)."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def key(self) -> str:
        """Name used in cache keys and reports (``digits``, ``digits-h3`` …)."""
        safe = self.name.replace(":", "_").replace("/", "_")
        if self.fingerprint:  # a folder: its last name and the hash of its path and files (short file names)
            kind, _, where = self.name.partition(":")
            safe = f"{kind}_{Path(where).name or 'root'}-{self.fingerprint}".replace(":", "_")
        return f"{safe}-h{self.heldout}" if self.heldout else safe


@dataclass
class DatasetBundle:
    """Train / validation / test splits of one dataset and its :class:`DatasetInfo`.

    ``heldout_test`` holds the test images of held-out classes (labels ``-1``)
    when the bundle was loaded with ``heldout=K``.
    """

    info: DatasetInfo
    train: Dataset
    val: Dataset
    test: Dataset
    heldout_test: Dataset | None = field(default=None, repr=False)

    def limited(self, limit: int | None) -> DatasetBundle:
        """The same bundle with its test split (and held-out split) cut to ``limit`` items."""
        if limit is None:
            return self
        if limit <= 0:
            raise RobustoodError(f"limit must be a positive number of images, got {limit}")

        def cut(ds: Dataset | None) -> Dataset | None:
            if ds is None or len(ds) <= limit:  # type: ignore[arg-type]
                return ds
            return Subset(ds, range(limit))

        return replace(self, test=cut(self.test), heldout_test=cut(self.heldout_test))

    def with_num_classes(self, num_classes: int | None) -> DatasetBundle:
        """The same bundle for a model with ``num_classes`` outputs, at least the dataset's classes
        (the extra classes are named by their index; labels stay the dataset's indices)."""
        if num_classes is None or num_classes == self.info.num_classes:
            return self
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < self.info.num_classes:
            raise RobustoodError(
                f"num_classes must be an integer of at least the dataset's {self.info.num_classes} classes, "
                f"got {num_classes!r}"
            )
        names = self.info.class_names
        extra = tuple(str(i) for i in range(len(names), num_classes))
        return replace(self, info=replace(self.info, class_names=(*names, *extra)))

    @classmethod
    def from_tensors(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        train: tuple[torch.Tensor, torch.Tensor] | None = None,
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        name: str | None = None,
    ) -> DatasetBundle:
        """A bundle whose test split is images ``x`` (``N×C×H×W`` float in [0, 1]) and labels ``y`` (``N``).

        ``train`` / ``val`` are optional ``(x, y)`` splits (detectors that need fitting, e.g.
        ``knn``, fit on ``train``; thresholds are calibrated on ``val``). The classes are
        ``class_names``, else ``num_classes``, else the largest label + 1 over the splits.
        ``name`` (default: ``tensors-<hash>`` of the data) names the set in reports and caches.
        """

        def pair(xy: Any, what: str) -> TensorDataset:
            if not isinstance(xy, (tuple, list)) or len(xy) != 2:
                raise RobustoodError(f"{what} must be a pair (images, labels) of tensors")
            xs, ys = (torch.as_tensor(v) for v in xy)
            if xs.dim() != 4:
                raise RobustoodError(f"{what} images must be N×C×H×W, got shape {tuple(xs.shape)}")
            if ys.dim() != 1 or len(ys) != len(xs):
                raise RobustoodError(f"{what} labels must be N = {len(xs)} class indices, got shape {tuple(ys.shape)}")
            if ys.dtype.is_floating_point and not bool((ys == ys.round()).all()):
                raise RobustoodError(f"{what} labels must be class indices (integers), not {ys.dtype} scores")
            xs = xs.float()
            if xs.numel() and (float(xs.min()) < 0 or float(xs.max()) > 1):
                raise RobustoodError(
                    f"{what} images must be in [0, 1] (got values in [{float(xs.min()):.3g}, {float(xs.max()):.3g}]); "
                    "normalisation belongs to the model (normalize=)"
                )
            return TensorDataset(xs, ys.long())

        test = pair((x, y), "test data")
        splits = {k: pair(v, f"{k} data") if v is not None else None for k, v in (("train", train), ("val", val))}
        if name is None:
            import hashlib

            h = hashlib.sha256()
            for ds in (test, *(d for d in splits.values() if d is not None)):
                h.update(str(tuple(ds.tensors[0].shape)).encode())
                h.update(ds.tensors[1].numpy().tobytes())
                h.update(ds.tensors[0].double().sum().numpy().tobytes())
            name = f"tensors-{h.hexdigest()[:8]}"
        return cls.from_datasets(
            test, train=splits["train"], val=splits["val"], num_classes=num_classes, class_names=class_names, name=name
        )

    @classmethod
    def from_datasets(
        cls,
        test: Dataset,
        *,
        train: Dataset | None = None,
        val: Dataset | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        name: str | None = None,
    ) -> DatasetBundle:
        """A bundle from map-style datasets of ``(image, label)`` pairs, images ``C×H×W`` in [0, 1]
        (e.g. ``torchvision.datasets.ImageFolder(..., transform=ToTensor())``); a ``DataLoader``
        stands for its ``.dataset``.

        Missing ``train`` / ``val`` splits are empty. The classes are ``class_names``, else the
        test set's ``classes`` attribute, else ``num_classes``, else the largest label + 1.
        ``mean`` / ``std`` (default: measured on up to 1,000 training, else test, images) are what
        a zoo model trained on this bundle normalises with.
        """
        test, train, val = (_map_style(d, what) for d, what in ((test, "test"), (train, "train"), (val, "val")))
        assert test is not None
        if len(test) == 0:  # type: ignore[arg-type]
            raise RobustoodError("the test data has zero samples")
        first = test[0]
        if not isinstance(first, (tuple, list)) or len(first) < 2 or not isinstance(first[0], torch.Tensor):
            raise RobustoodError(
                f"a dataset must yield (image tensor C×H×W, label) pairs, got {type(first).__name__}; "
                "add transform=ToTensor() (torchvision) or wrap it"
            )
        shape = tuple(int(v) for v in first[0].shape)
        if len(shape) != 3:
            raise RobustoodError(f"images must be C×H×W, got shape {shape}")
        lo, hi = float(first[0].min()), float(first[0].max())
        if lo < 0 or hi > 1:
            raise RobustoodError(
                f"images must be in [0, 1] (the first is in [{lo:.3g}, {hi:.3g}]); take Normalize out of the "
                "dataset's transform and give its constants to the model instead (normalize=MEAN,STD)"
            )
        empty = TensorDataset(torch.empty((0, *shape)), torch.empty(0, dtype=torch.long))
        train = train if train is not None else empty
        val = val if val is not None else empty
        if class_names is None:
            classes = getattr(test, "classes", None)
            if classes and (num_classes is None or len(classes) == num_classes):
                class_names = [str(c) for c in classes]
        if class_names is None:
            if num_classes is None:
                top = max(int(_targets(d).max()) if len(d) else -1 for d in (test, train, val))  # type: ignore[arg-type]
                num_classes = top + 1
            class_names = [str(i) for i in range(num_classes)]
        if num_classes is not None and len(class_names) != num_classes:
            raise RobustoodError(f"{len(class_names)} class names for num_classes={num_classes}")
        if len(class_names) < 1:
            raise RobustoodError("the data needs at least one class")
        if mean is None or std is None:
            source = train if len(train) else test  # type: ignore[arg-type]
            sample = torch.stack([source[i][0] for i in range(min(1000, len(source)))]).float()  # type: ignore[arg-type]
            mean = sample.mean(dim=(0, 2, 3)).tolist()
            std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        if name is None:
            name = f"data-{type(test).__name__.lower()}{len(test)}"  # type: ignore[arg-type]
        info = DatasetInfo(name, shape, tuple(class_names), tuple(mean), tuple(std))  # type: ignore[arg-type]
        return cls(info, train, val, test)


def _map_style(data: Any, what: str) -> Dataset | None:
    """A map-style dataset for a ``Dataset``, a ``DataLoader`` (its dataset) or ``None``."""
    from torch.utils.data import DataLoader, IterableDataset

    if data is None:
        return None
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, IterableDataset) or not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        raise RobustoodError(
            f"the {what} data must be a map-style Dataset (with __len__ and __getitem__), a DataLoader over one, "
            f"or (x, y) tensors; got {type(data).__name__}"
        )
    return data


def as_bundle(
    data: Any,
    *,
    num_classes: int | None = None,
    train: Any = None,
    name: str | None = None,
) -> DatasetBundle:
    """A :class:`DatasetBundle` for the data forms :func:`robustood.evaluate` accepts: a bundle as
    it is, ``(x, y)`` tensors, a ``Dataset`` or a ``DataLoader`` (its dataset), evaluated as the
    test split; ``train`` is an optional training split in the same forms."""
    if isinstance(data, DatasetBundle):
        return data
    if isinstance(data, (tuple, list)):
        if train is not None and not isinstance(train, (tuple, list)):
            train = stack_dataset(_map_style(train, "train"))  # type: ignore[arg-type]
        if len(data) != 2:
            raise RobustoodError("data as tensors is a pair (images N×C×H×W in [0, 1], labels N)")
        return DatasetBundle.from_tensors(data[0], data[1], train=train, num_classes=num_classes, name=name)
    if isinstance(train, (tuple, list)):
        train = TensorDataset(torch.as_tensor(train[0]).float(), torch.as_tensor(train[1]).long())
    return DatasetBundle.from_datasets(data, train=train, num_classes=num_classes, name=name)


def as_ood_dataset(data: Any, name: str) -> Dataset:
    """An OOD set (labels ``-1``) from a ``Dataset``, a ``DataLoader``, ``(x, y)`` or ``x`` tensors."""
    if isinstance(data, torch.Tensor):
        data = (data, None)
    if isinstance(data, (tuple, list)):
        x = torch.as_tensor(data[0]).float() if len(data) else torch.empty(0)
        if x.dim() != 4:
            raise RobustoodError(f"OOD set {name!r}: images must be N×C×H×W, got shape {tuple(x.shape)}")
        return TensorDataset(x, torch.full((len(x),), -1, dtype=torch.long))
    ds = _map_style(data, f"OOD set {name!r}")
    return ds if isinstance(ds, (OODDataset, TensorDataset)) else OODDataset(ds)  # type: ignore[arg-type]


class OODDataset(Dataset):
    """Wrap a dataset so every label is ``-1`` (OOD) and images take a given shape."""

    def __init__(self, base: Dataset, shape: tuple[int, int, int] | None = None) -> None:
        self.base = base
        self.shape = shape

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.base[i][0]
        if self.shape is not None and tuple(x.shape) != self.shape:
            x = conform_images(x.unsqueeze(0), self.shape)[0]
        return x, -1


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where torchvision datasets live: ``override``, else ``$ROBUSTOOD_DATA_DIR``,
    else ``<cache dir>/data``."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return cache_dir() / "data"


def conform_images(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Convert a ``B×C×H×W`` batch in [0, 1] to ``shape = (C, H, W)``.

    Colour → grey uses ITU-R 601 luma weights, grey → colour repeats the channel, and
    the spatial size is changed with antialiased bilinear resampling.
    """
    c, h, w = (int(s) for s in shape)
    if x.dim() != 4:
        raise RobustoodError(f"expected a batch of images B×C×H×W, got shape {tuple(x.shape)}")
    if x.shape[1] != c:
        if x.shape[1] == 3 and c == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
            x = (x * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        else:
            raise RobustoodError(f"cannot convert {x.shape[1]}-channel images to {c} channels")
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0.0, 1.0).contiguous()


def stack_dataset(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialise a (small) dataset as ``(images, labels)`` tensors."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)  # type: ignore[arg-type]
    return torch.stack(list(xs)), torch.as_tensor(ys, dtype=torch.long)


# --------------------------------------------------------------------------- registry

DatasetLoader = Callable[..., DatasetBundle]
DATASETS: dict[str, DatasetLoader] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    def deco(fn: DatasetLoader) -> DatasetLoader:
        DATASETS[name] = fn
        return fn

    return deco


def load_dataset(
    name: str = "digits",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    heldout: int = 0,
    seed: int = 0,
    image_size: int | None = None,
) -> DatasetBundle:
    """Load a dataset by name.

    Args:
        name: a key of :data:`DATASETS` or ``imagefolder:PATH``.
        root: data dir for torchvision datasets (see :func:`data_dir`).
        download: let torchvision download missing files.
        heldout: hold out the last ``heldout`` classes: the bundle keeps the first
            ``C − heldout`` classes and puts the test images of the others in
            ``heldout_test`` (the ``heldout:K`` OOD source).
        seed: seed of the validation split (the test split is fixed by the dataset).
        image_size: ``imagefolder:PATH`` only: resize images to ``image_size``² (default: keep
            their size when they all share one, else 32).

    Raises:
        RobustoodError: unknown name or bad ``heldout``.
        DatasetUnavailableError: files missing and not downloadable.
    """
    seed = check_seed(seed)
    key = str(name).strip()
    if key.lower().startswith("imagefolder:"):
        bundle = _load_imagefolder(key.split(":", 1)[1], seed=seed, image_size=image_size)
    else:
        key = key.lower()
        if key not in DATASETS:
            raise RobustoodError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}, imagefolder:PATH")
        bundle = DATASETS[key](root=data_dir(root), download=download, seed=seed)
    if heldout:
        bundle = _hold_out(bundle, heldout)
    if bundle.info.num_classes < 2:
        raise RobustoodError(f"{bundle.info.name} has {bundle.info.num_classes} class; a classifier needs at least two")
    return bundle


def _split_train_val(n: int, seed: int, val_fraction: float = 0.1) -> tuple[list[int], list[int]]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction))
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def _targets(ds: Dataset) -> np.ndarray:
    """Labels of a dataset without loading its images where the dataset allows."""
    if isinstance(ds, Subset):
        return _targets(ds.dataset)[np.asarray(ds.indices)]
    if isinstance(ds, TensorDataset):
        return ds.tensors[1].numpy()
    for attr in ("targets", "labels"):
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr))
    if hasattr(ds, "samples"):
        return np.asarray([s[1] for s in ds.samples])
    return np.asarray([ds[i][1] for i in range(len(ds))])  # type: ignore[arg-type]


def _hold_out(bundle: DatasetBundle, k: int) -> DatasetBundle:
    c = bundle.info.num_classes
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= c - 2:
        raise RobustoodError(
            f"heldout:K must leave at least two classes to train on: K from 1 to {c - 2} for "
            f"{bundle.info.name} ({c} classes), got {k}"
        )
    keep = c - k

    def select(ds: Dataset, inside: bool) -> Subset:
        t = _targets(ds)
        idx = np.flatnonzero(t < keep) if inside else np.flatnonzero(t >= keep)
        return Subset(ds, idx.tolist())

    info = replace(bundle.info, class_names=bundle.info.class_names[:keep], heldout=k)
    return DatasetBundle(
        info=info,
        train=select(bundle.train, True),
        val=select(bundle.val, True),
        test=select(bundle.test, True),
        heldout_test=OODDataset(select(bundle.test, False)),
    )


# --------------------------------------------------------------------------- digits


@register_dataset("digits")
def _load_digits(root: Path | None = None, download: bool = True, seed: int = 0) -> DatasetBundle:
    """scikit-learn's 1,797 handwritten 8×8 digits (bundled, no download).

    Fixed stratified 80/20 train/test split; 10 % of train held back for validation.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    x = torch.from_numpy((raw.images / 16.0).astype(np.float32)).unsqueeze(1)  # N×1×8×8 in [0, 1]
    y = torch.from_numpy(raw.target.astype(np.int64))
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=raw.target)
    train_full = TensorDataset(x[np.sort(idx_train)], y[np.sort(idx_train)])
    test = TensorDataset(x[np.sort(idx_test)], y[np.sort(idx_test)])
    tr, va = _split_train_val(len(train_full), seed)
    mean = float(train_full.tensors[0].mean())
    std = float(train_full.tensors[0].std())
    info = DatasetInfo("digits", (1, 8, 8), tuple(str(i) for i in range(10)), (mean,), (std,))
    return DatasetBundle(info, Subset(train_full, tr), Subset(train_full, va), test)


# --------------------------------------------------------------------------- torchvision

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# CIFAR-100 classes whose concept CIFAR-10 already covers (vehicles CIFAR-10 calls
# "automobile"/"truck"); dropped from the ``cifar100`` OOD source when the ID set is CIFAR-10.
CIFAR100_OVERLAP_WITH_CIFAR10 = ("bus", "pickup_truck", "streetcar", "tractor")


@dataclass(frozen=True)
class _TVSpec:
    title: str
    cls_name: str
    split_kw: str  # "train" (bool) or "split" (str)
    files: str  # what to put where, for the offline message
    url: str
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 10


_TV = {
    "cifar10": _TVSpec(
        "CIFAR-10",
        "CIFAR10",
        "train",
        "cifar-10-python.tar.gz (or its extracted folder cifar-10-batches-py/)",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        (3, 32, 32),
        CIFAR_MEAN,
        CIFAR_STD,
    ),
    "cifar100": _TVSpec(
        "CIFAR-100",
        "CIFAR100",
        "train",
        "cifar-100-python.tar.gz (or its extracted folder cifar-100-python/)",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        (3, 32, 32),
        CIFAR_MEAN,
        CIFAR_STD,
        100,
    ),
    "svhn": _TVSpec(
        "SVHN",
        "SVHN",
        "split",
        "train_32x32.mat and test_32x32.mat",
        "http://ufldl.stanford.edu/housenumbers/",
        (3, 32, 32),
        (0.4377, 0.4438, 0.4728),
        (0.198, 0.201, 0.197),
    ),
    "mnist": _TVSpec(
        "MNIST",
        "MNIST",
        "train",
        "MNIST/raw/ with the four *-ubyte.gz files",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        (1, 28, 28),
        (0.1307,),
        (0.3081,),
    ),
    "fashionmnist": _TVSpec(
        "FashionMNIST",
        "FashionMNIST",
        "train",
        "FashionMNIST/raw/ with the four *-ubyte.gz files",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (1, 28, 28),
        (0.2860,),
        (0.3530,),
    ),
}


def _tv_split(name: str, root: Path, train: bool, download: bool) -> Dataset:
    import torchvision
    from torchvision import transforms

    spec = _TV[name]
    cls = getattr(torchvision.datasets, spec.cls_name)
    split = {"train": train} if spec.split_kw == "train" else {"split": "train" if train else "test"}
    tf = transforms.ToTensor()
    target = root / name
    try:
        return cls(str(target), transform=tf, download=False, **split)
    except (RuntimeError, FileNotFoundError):
        if not download:
            pass
        else:
            try:
                return cls(str(target), transform=tf, download=True, **split)
            except Exception as exc:  # network errors come in many types (URLError, OSError, HTTPError)
                reason = f" (download failed: {type(exc).__name__}: {exc})"
                raise DatasetUnavailableError(
                    f"{spec.title} is not in {target} and could not be downloaded{reason}; "
                    f"put {spec.files} from {spec.url} into {target}"
                ) from None
    raise DatasetUnavailableError(
        f"{spec.title} is not in {target} and downloading is off; put {spec.files} from {spec.url} into {target}"
    )


def _class_names(ds: Dataset, n: int) -> tuple[str, ...]:
    classes = getattr(ds, "classes", None)
    return tuple(str(c) for c in classes) if classes and len(classes) == n else tuple(str(i) for i in range(n))


#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files (``dpkg -L dataset-fashion-mnist``).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """An IDX file (gzipped or not) of unsigned bytes, its header checked: the magic number
    (``0x0801`` labels, ``0x0803`` images) and the shape. Raises :class:`DatasetUnavailableError`."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DatasetUnavailableError(f"cannot read {path}: {exc}") from None
    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise DatasetUnavailableError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (magic {magic:#06x})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != shape or len(data) != header + int(np.prod(shape)):
        raise DatasetUnavailableError(f"{path} holds shape {dims} ({len(data) - header} bytes), expected {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _debian_fashion_mnist(directory: Path | None = None) -> tuple[TensorDataset, TensorDataset] | None:
    """FashionMNIST's train and test splits from the IDX files of Debian's ``dataset-fashion-mnist``
    package (re-compressed, so their checksums are not torchvision's: the headers and shapes are
    checked instead), or ``None`` where the package is not installed."""
    directory = DEBIAN_FASHION_MNIST if directory is None else directory
    files = {
        f"{split}-{kind}": directory / f"{split}-{kind}-ubyte.gz"
        for split in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    }
    if not all(f.is_file() for f in files.values()):
        return None
    out = []
    for split, n in (("train", 60000), ("t10k", 10000)):
        images = read_idx(files[f"{split}-images-idx3"], 0x0803, (n, 28, 28))
        labels = read_idx(files[f"{split}-labels-idx1"], 0x0801, (n,))
        if int(labels.max()) > 9:
            raise DatasetUnavailableError(f"{files[split + '-labels-idx1']} holds labels above 9")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        out.append(TensorDataset(x, torch.from_numpy(labels.astype(np.int64))))
    return out[0], out[1]


def _make_tv_loader(name: str) -> DatasetLoader:
    def load(root: Path, download: bool = True, seed: int = 0) -> DatasetBundle:
        spec = _TV[name]
        debian = None
        if name == "fashionmnist" and not (root / name / "FashionMNIST" / "raw").is_dir():
            debian = _debian_fashion_mnist()
        if debian is not None:
            train_full, test = debian
            tr, va = _split_train_val(len(train_full), seed)
            info = DatasetInfo(name, spec.shape, FASHION_MNIST_CLASSES, spec.mean, spec.std)
            return DatasetBundle(info, Subset(train_full, tr), Subset(train_full, va), test)
        train_full = _tv_split(name, root, True, download)
        test = _tv_split(name, root, False, download)
        names = _CIFAR10_CLASSES if name == "cifar10" else _class_names(train_full, spec.num_classes)
        tr, va = _split_train_val(len(train_full), seed)
        info = DatasetInfo(name, spec.shape, names, spec.mean, spec.std)
        return DatasetBundle(info, Subset(train_full, tr), Subset(train_full, va), test)

    load.__doc__ = f"torchvision's {_TV[name].title} (downloaded into the data dir when online)."
    return load


for _name in _TV:
    register_dataset(_name)(_make_tv_loader(_name))


def catalogue(root: str | os.PathLike | None = None) -> list[dict[str, object]]:
    """One row per registered dataset: name, source, input shape, classes, whether it is on disk."""
    rows: list[dict[str, object]] = [
        {"name": "digits", "source": "scikit-learn (bundled)", "input_shape": "1x8x8", "classes": 10, "on_disk": "yes"}
    ]
    base = data_dir(root)
    for name, spec in _TV.items():
        rows.append(
            {
                "name": name,
                "source": "torchvision",
                "input_shape": "x".join(map(str, spec.shape)),
                "classes": spec.num_classes,
                "on_disk": "yes"
                if (base / name).is_dir()
                or (name == "fashionmnist" and (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file())
                else "no",
            }
        )
    rows.append(
        {
            "name": "imagefolder:PATH",
            "source": "folder of class sub-folders",
            "input_shape": "3xHxW (kept, or --image-size)",
            "classes": "per folder",
            "on_disk": "–",
        }
    )
    return rows


class ImageFiles(Dataset):
    """Image files with class labels (``samples``: ``(path, label)`` pairs), read with PIL and
    ``transform``; like torchvision's ``ImageFolder``, but a file that cannot be decoded is
    reported by name instead of ending in a traceback."""

    def __init__(self, samples: Sequence[tuple[str, int]], classes: Sequence[str], transform: Callable) -> None:
        self.samples = list(samples)
        self.targets = [t for _, t in self.samples]
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, target = self.samples[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise DatasetUnavailableError(f"imagefolder: cannot read image {path}: {exc}; remove it") from None
        return self.transform(img), target


def _image_problem(path: Path, size: int) -> tuple[str | None, tuple[int, int]]:
    """Why ``path`` is not a readable image (decoded at a reduced size where the format allows), else
    ``None``; and the image's ``(width, height)`` as stored."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            stored = img.size
            img.draft("RGB", (size, size))  # JPEG: decode at a fraction of the size, fast
            img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError … for damaged files
        return (str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__), (0, 0)
    return None, stored


def _scan_split(
    folder: Path, size: int, sizes: set[tuple[int, int]]
) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    """The readable images of each class sub-folder of ``folder`` (by class name), and the unreadable
    files; the stored ``(width, height)`` of every readable image is added to ``sizes``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes: dict[str, list[Path]] = {}
    bad: list[tuple[Path, str]] = []
    try:
        subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise DatasetUnavailableError(f"imagefolder: cannot read {folder}: {exc.strerror or exc}") from None
    for d in subdirs:
        files = sorted(
            p for p in d.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith(".") and p.is_file()
        )
        good = []
        for p in files:
            problem, stored = _image_problem(p, size)
            if problem is None:
                good.append(p)
                sizes.add(stored)
            else:
                bad.append((p, problem))
        if good:
            classes[d.name] = good
    return classes, bad


def _file_list_fingerprint(root: Path, files: Sequence[Path]) -> str:
    """A short hash of the image files (relative path, size, modification time): another folder's
    or a changed folder's models never share a cache entry."""
    import hashlib

    h = hashlib.sha256(str(root).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:10]


MIN_IMAGEFOLDER_IMAGES = 3


def _load_imagefolder(path: str, seed: int = 0, image_size: int | None = None, ood: bool = False) -> DatasetBundle:
    """A folder of class sub-folders (e.g. Animals-10).

    Images keep their size when they all share one; otherwise (or when ``image_size`` is given)
    they are resized to ``image_size``² (default 32), which is logged once. Uses ``PATH/train``
    with ``PATH/test`` (or ``PATH/val``) when they exist (classes matched by folder name; a test
    class unseen in training is refused), else a fixed 80/20 split. Every image is
    decoded once when the folder is loaded: unreadable files (damaged, truncated, not an
    image) are skipped with a warning that names them. At least two classes are required,
    except for an OOD source (``ood=True``): its ``test`` split is then every readable image.
    """
    import warnings

    from torchvision import transforms

    if not str(path).strip():
        raise RobustoodError("imagefolder: give a folder, e.g. imagefolder:data/animals")
    given = Path(path).expanduser()
    if not given.is_dir():
        raise DatasetUnavailableError(f"imagefolder: {given} is not a directory of class sub-folders")
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 1):
        raise RobustoodError(f"image_size must be a positive number of pixels, got {image_size!r}")
    root = given.resolve()
    test_dir = next((root / d for d in ("test", "val") if (root / "train").is_dir() and (root / d).is_dir()), None)
    split = test_dir is not None
    sizes: set[tuple[int, int]] = set()
    train_classes, bad = _scan_split(root / "train" if split else root, image_size or 32, sizes)
    if test_dir is not None:
        test_classes, bad_test = _scan_split(test_dir, image_size or 32, sizes)
        bad += bad_test
    if image_size is None and len(sizes) == 1:
        w, h = next(iter(sizes))
        shape_hw, steps = (h, w), []
    else:
        if image_size is None and len(sizes) > 1:
            log.warning(
                "imagefolder: %s holds images of %d different sizes; resizing them to 32×32 "
                "(choose with --image-size N)",
                root,
                len(sizes),
            )
        shape_hw = (int(image_size or 32),) * 2
        steps = [transforms.Resize(shape_hw)]
    tf = transforms.Compose([*steps, transforms.ToTensor()])
    if bad:
        shown = ", ".join(f"{p} ({why})" for p, why in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        warnings.warn(
            f"imagefolder: skipped {len(bad)} unreadable image file(s): {shown}{more}", UserWarning, stacklevel=3
        )
    names = sorted(train_classes)
    where = root / "train" if split else root
    if ood:  # OOD images: labels do not matter, one class folder is enough; the same split as for ID data
        chosen = test_classes if split else train_classes
        samples = [(str(p), 0) for c in sorted(chosen) for p in chosen[c]]
        if not samples:
            raise RobustoodError(f"imagefolder: {root} holds no readable images in class sub-folders")
        full = ImageFiles(samples, ["ood"], tf)
        if not split:
            perm = np.random.default_rng(0).permutation(len(full))
            full = Subset(full, sorted(perm[: max(1, len(full) // 5)].tolist()))  # type: ignore[assignment]
        info = DatasetInfo(f"imagefolder:{root}", (3, *shape_hw), ("ood",), IMAGENET_MEAN, IMAGENET_STD)
        return DatasetBundle(info, full, full, full)
    if len(names) < 2:
        found = f"one class ({names[0]})" if names else "no class sub-folder with readable images"
        raise RobustoodError(
            f"imagefolder: {where} has {found}; a classifier needs at least two class sub-folders of images"
        )
    index = {name: i for i, name in enumerate(names)}
    train_samples = [(str(p), index[c]) for c in names for p in train_classes[c]]
    if split:
        unseen = sorted(set(test_classes) - set(index))
        if unseen:
            raise RobustoodError(
                f"imagefolder: {test_dir} has class(es) {', '.join(unseen)} that {root / 'train'} does not "
                f"(training classes: {', '.join(names)}); a model cannot be tested on classes it never saw"
            )
        test_samples = [(str(p), index[c]) for c in sorted(test_classes) for p in test_classes[c]]
        train_full: Dataset = ImageFiles(train_samples, names, tf)
        test: Dataset = ImageFiles(test_samples, names, tf)
        n_train, n_test = len(train_samples), len(test_samples)
        files = [Path(p) for p, _ in train_samples + test_samples]
    else:
        full = ImageFiles(train_samples, names, tf)
        perm = np.random.default_rng(0).permutation(len(full))
        n_test = max(1, len(full) // 5)
        train_full = Subset(full, sorted(perm[n_test:].tolist()))
        test = Subset(full, sorted(perm[:n_test].tolist()))
        n_train = len(full) - n_test
        files = [Path(p) for p, _ in train_samples]
    if n_train < 2 or n_test < 1:
        raise RobustoodError(
            f"imagefolder: {root} has too few readable images ({n_train} to train, {n_test} to test); "
            f"give at least {MIN_IMAGEFOLDER_IMAGES} (two to train and validate on, one to test)"
        )
    tr, va = _split_train_val(n_train, seed)
    info = DatasetInfo(
        f"imagefolder:{root}",
        (3, *shape_hw),
        tuple(names),
        IMAGENET_MEAN,
        IMAGENET_STD,
        fingerprint=_file_list_fingerprint(root, sorted(files)),
    )
    return DatasetBundle(info, Subset(train_full, tr), Subset(train_full, va), test)


# --------------------------------------------------------------------------- OOD sources

OOD_SOURCES: dict[str, str] = {
    "noise": "uniform noise in [0, 1] (as torchvision's FakeData)",
    "gaussian": "Gaussian noise N(0.5, 0.25²) clipped to [0, 1]",
    "natural": "patches of scikit-learn's bundled sample photographs, resized to the ID shape",
    "heldout:K": "test images of the last K classes, held out of training (load the ID set with heldout=K)",
    "cifar100": "CIFAR-100 test images (for CIFAR-10: only classes absent from CIFAR-10)",
    "svhn | mnist | fashionmnist | cifar10": "another dataset's test images, converted to the ID shape",
}


def load_ood(
    spec: str,
    bundle: DatasetBundle,
    *,
    n: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> Dataset:
    """An OOD input set by name, images in ``bundle``'s shape, labels ``-1``.

    Args:
        spec: ``noise``, ``gaussian``, ``natural``, ``heldout:K``, or a dataset name.
        bundle: the ID dataset (gives the shape; must hold ``heldout_test`` for ``heldout:K``).
        n: number of images (default: as many as the ID test split; datasets: all, cut to ``n``).
        seed: seed of the synthetic sources.
    """
    shape = bundle.info.input_shape
    n_default = len(bundle.test)  # type: ignore[arg-type]
    count = n_default if n is None else int(n)
    if count <= 0:
        raise RobustoodError(f"OOD set {spec!r} would have {count} images; ask for at least one")
    key = spec.strip().lower()
    gen = torch.Generator().manual_seed(seed)
    if key == "noise":
        return TensorDataset(torch.rand((count, *shape), generator=gen), torch.full((count,), -1))
    if key == "gaussian":
        x = (0.5 + 0.25 * torch.randn((count, *shape), generator=gen)).clamp(0, 1)
        return TensorDataset(x, torch.full((count,), -1))
    if key == "natural":
        return TensorDataset(_natural_patches(count, shape, seed), torch.full((count,), -1))
    if key.startswith("heldout:"):
        k_text = key.split(":", 1)[1]
        if not k_text.isdigit() or int(k_text) < 1:
            raise RobustoodError(f"invalid OOD source {spec!r}: use heldout:K with K ≥ 1 classes")
        k = int(k_text)
        if bundle.info.heldout != k:
            raise RobustoodError(
                f"OOD source heldout:{k} needs the ID set loaded with its last {k} classes held out "
                f"(load_dataset(..., heldout={k}); on the command line the model is then trained on the rest)"
            )
        ds = bundle.heldout_test
        assert ds is not None
        return ds if n is None or n >= len(ds) else Subset(ds, range(n))  # type: ignore[arg-type]
    if key in DATASETS or key.startswith("imagefolder:"):
        if key.startswith("imagefolder:"):  # OOD images: one class folder is enough, every image is used
            test = _load_imagefolder(spec.strip().split(":", 1)[1], ood=True).test
            other = None
        else:
            other = load_dataset(spec, root=root, download=download)
            test = other.test
        if key == "cifar100" and bundle.info.name == "cifar10" and other is not None:
            names = other.info.class_names
            drop = [names.index(c) for c in CIFAR100_OVERLAP_WITH_CIFAR10 if c in names]
            test = Subset(test, np.flatnonzero(~np.isin(_targets(test), drop)).tolist())
        if n is not None and n < len(test):  # type: ignore[arg-type]
            test = Subset(test, range(n))
        return OODDataset(test, shape)
    known = list(dict.fromkeys([k for k in OOD_SOURCES if "|" not in k] + sorted(DATASETS)))
    raise RobustoodError(f"unknown OOD source {spec!r}; known: {', '.join(known)}, adv:ATTACK:EPS")


def _natural_patches(count: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Random square crops (32–128 px) of the two sample photographs, resized to ``shape``."""
    from sklearn.datasets import load_sample_images

    images = [torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255.0 for im in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = torch.empty((count, *shape))
    for i in range(count):
        img = images[int(rng.integers(len(images)))]
        _, H, W = img.shape
        size = int(rng.integers(32, min(128, H, W) + 1))
        top, left = int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))
        patch = img[:, top : top + size, left : left + size].unsqueeze(0)
        out[i] = conform_images(patch, shape)[0]
    return out
