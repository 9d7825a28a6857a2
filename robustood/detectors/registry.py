"""The registry of detectors: one plain table from a lowercase name to how its detector is built.

A row (:class:`DetectorSpec`) says how to build the pytorch-ood detector, what it scores
(``kind``), its parameters with their defaults and the paper it comes from; the generic
adapter :class:`~robustood.detectors.OODDetector` does the rest. pytorch-ood is imported
only when a detector is built, so importing the registry is cheap.

=========================  ========  ==========================================================
name                       kind      built from
=========================  ========  ==========================================================
``msp``                    logits    pytorch-ood ``MaxSoftmax``
``maxlogit``               logits    pytorch-ood ``MaxLogit``
``energy``                 logits    pytorch-ood ``EnergyBased``
``odin``                   input     pytorch-ood ``ODIN`` (a gradient step on the input)
``mahalanobis``            features  pytorch-ood ``Mahalanobis`` (fitted)
``vim``                    features  pytorch-ood ``ViM`` (fitted, needs ``model.head``)
``knn``                    features  pytorch-ood ``KNN`` (fitted)
``reconstruction``         input     :class:`~robustood.detectors.ReconstructionDetector`, autoencoder (fitted)
``feature_reconstruction`` input     :class:`~robustood.detectors.ReconstructionDetector`, decoder on features
``squeeze``                input     :class:`~robustood.defenses.FeatureSqueezingDetector` (fitted threshold)
=========================  ========  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..errors import RobustoodError
from .base import Kind, feature_split

__all__ = ["DETECTORS", "DetectorSpec", "parse_detectors", "register_detector"]


@dataclass(frozen=True)
class DetectorSpec:
    """One row of :data:`DETECTORS`.

    Attributes:
        build: ``build(model, **params)``, the pytorch-ood ``Detector``. ``model`` is the classifier
            where one is at hand (``fit``; each ``score`` call of an ``input`` detector that needs
            no fitting), else ``None``. With ``wrapped=False``: a ready robustood detector.
        kind: what it scores: ``logits`` (``B×K``), ``features`` (penultimate, ``B×D``) or
            ``input`` (images, in its own pass).
        defaults: every parameter, with its default value.
        reference: the paper that introduced the detector.
        label: the class name ``repr`` shows, e.g. ``MaxSoftmax(t=1.0)`` (default: the name).
        requires_fit: whether it must be fitted on ID training data before it scores.
        shown: the parameters ``repr`` shows (default: every one).
        check: ``check(**params)`` raises :class:`~robustood.errors.RobustoodError` on a bad value.
        loader: ``loader(dataset, batch_size, **params)``: the re-iterable of ``(x, y)`` batches
            an ``input`` detector's ``fit(loader)`` gets from a training ``Dataset`` (default:
            ordered batches of ``batch_size``).
        wrapped: ``False`` for a detector that implements robustood's interface itself.
        fit_data: ``False`` for a detector that is "fitted" only to be built with the model's head
            (ASH, SCALE, LTS): it needs no training data.
    """

    build: Callable[..., Any]
    kind: Kind
    defaults: Mapping[str, Any] = field(default_factory=dict)
    reference: str = ""
    label: str = ""
    requires_fit: bool = False
    shown: tuple[str, ...] | None = None
    check: Callable[..., None] | None = None
    loader: Callable[..., Iterable] | None = None
    wrapped: bool = True
    fit_data: bool = True


# --------------------------------------------------------------------------- builders (import pytorch-ood lazily)


def _msp(model: nn.Module | None, *, t: float):
    from . import _pood

    return _pood.MaxSoftmax(None, t=t)


def _maxlogit(model: nn.Module | None):
    from . import _pood

    return _pood.MaxLogit(None)


def _energy(model: nn.Module | None, *, t: float):
    from . import _pood

    return _pood.EnergyBased(None, t=t)


def _odin(model: nn.Module | None, *, eps: float, temperature: float):
    from . import _pood

    return _pood.ODIN(model, eps=eps, temperature=temperature)


def _mahalanobis(model: nn.Module | None):
    from . import _pood

    return _pood.Mahalanobis(None)


def _vim(model: nn.Module | None, *, d: int):
    from . import _pood

    split = feature_split(model)
    head = split[1] if split is not None else None
    if not isinstance(head, nn.Linear):
        raise RobustoodError(
            "ViM needs the model's final nn.Linear layer as model.head: a robustood Classifier, or a model whose "
            "features are the input of its last nn.Linear layer (the default; leave the feature layer out)"
        )
    w, b = head.weight.detach().float(), head.bias.detach().float()
    return _pood.ViM(None, d=min(d, max(1, w.shape[1] // 2)), w=w, b=b)


def _knn(model: nn.Module | None, *, k: int):
    from . import _pood

    return _pood.KNN(None, k=k)


def _reconstruction(
    model: nn.Module | None, *, source: str, epochs: int, lr: float, width: int, seed: int, train_batch_size: int
):
    from .reconstruction import ReconstructionDetector

    encoder = None
    if source == "features":
        split = feature_split(model)
        if split is None:
            raise RobustoodError(
                "feature reconstruction needs a model with .features(x) (a robustood Classifier); "
                "use the image autoencoder (reconstruction) instead"
            )
        model.eval()  # type: ignore[union-attr]
        encoder = split[0]
    return ReconstructionDetector(None, encoder, epochs=epochs, lr=lr, width=width, seed=seed)


def _shuffled(data: Dataset, batch_size: int, *, train_batch_size: int, seed: int, **_: Any) -> Iterable:
    from .reconstruction import Shuffled

    return Shuffled(data, train_batch_size, seed)


def _squeeze(model: nn.Module | None, **params: Any):
    from ..defenses.squeeze import FeatureSqueezingDetector

    return FeatureSqueezingDetector(**params)


def _head(model: nn.Module | None, name: str) -> nn.Module:
    """The model's final layer (its features → logits), which detectors such as fDBD and DICE read."""
    split = feature_split(model)
    if split is None:
        raise RobustoodError(
            f"{name} needs the model's final layer: a robustood Classifier (model.head) or a model whose features "
            "are the input of its last nn.Linear layer (the default; leave the feature layer out)"
        )
    return split[1]


def _linear_head(model: nn.Module | None, name: str) -> nn.Linear:
    head = _head(model, name)
    if not isinstance(head, nn.Linear):
        raise RobustoodError(f"{name} needs the model's final layer to be an nn.Linear, got {type(head).__name__}")
    return head


class _OnMaps(nn.Module):
    """A head applied to penultimate features given as ``B×D×1×1`` feature maps."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, maps):
        return self.head(maps.flatten(1))


def _pood(cls_name: str):
    from . import _pood

    return getattr(_pood.detector, cls_name)


def _entropy(model: nn.Module | None):
    return _pood("Entropy")(None)


def _gen(model: nn.Module | None, *, gamma: float, m: int | None):
    return _pood("GEN")(None, gamma=gamma, M=m)


def _klmatching(model: nn.Module | None):
    return _pood("KLMatching")(None)


def _dice(model: nn.Module | None, *, p: float):
    head = _linear_head(model, "DICE")
    bias = head.bias if head.bias is not None else head.weight.new_zeros(head.weight.shape[0])
    return _pood("DICE")(None, w=head.weight.detach().float(), b=bias.detach().float(), p=p)


def _she(model: nn.Module | None):
    return _pood("SHE")(None, _head(model, "SHE"))


def _fdbd(model: nn.Module | None):
    return _pood("fDBD")(None, _linear_head(model, "fDBD"))


def _nnguide(model: nn.Module | None, *, k: int):
    return _pood("NNGuide")(None, _head(model, "NNGuide"), k=k)


def _nci(model: nn.Module | None, *, alpha: float):
    return _pood("NCI")(None, _linear_head(model, "NCI"), alpha=alpha)


def _rmd(model: nn.Module | None):
    return _pood("RMD")(None)


def _lts(model: nn.Module | None, *, p: float):
    return _pood("LTS")(None, _head(model, "LTS"), p=p)


def _ash(model: nn.Module | None, *, variant: str, percentile: float):
    return _pood("ASH")(None, _OnMaps(_head(model, "ASH")), variant=variant, percentile=percentile)


def _react(model: nn.Module | None, *, percentile: float):
    return _pood("ReAct")(None, _OnMaps(_head(model, "ReAct")), percentile=percentile)


def _scale(model: nn.Module | None, *, percentile: float):
    return _pood("SCALE")(None, _OnMaps(_head(model, "SCALE")), percentile=percentile)


def _vra(model: nn.Module | None, *, lower_percentile: float, upper_percentile: float):
    head = _OnMaps(_head(model, "VRA"))
    return _pood("VRA")(None, head, lower_percentile=lower_percentile, upper_percentile=upper_percentile)


def _gradnorm(model: nn.Module | None, *, temperature: float):
    return _pood("GradNorm")(model, temperature=temperature)


# --------------------------------------------------------------------------- parameter checks


def _fraction(name: str):
    def check(**params: Any) -> None:
        for key, value in params.items():
            if key in ("p", "percentile", "lower_percentile", "upper_percentile") and not 0 <= value <= 1:
                raise RobustoodError(f"{name} {key} must be a fraction in [0, 1] (e.g. 0.9, not 90), got {value}")
            if key in ("k", "m") and value is not None and value < 1:
                raise RobustoodError(f"{name} {key} must be at least 1, got {value}")
            if key in ("gamma", "temperature") and not value > 0:
                raise RobustoodError(f"{name} {key} must be positive, got {value}")
            if key == "variant" and value not in ("ash-s", "ash-p", "ash-b"):
                raise RobustoodError(f"ASH variant must be ash-s, ash-p or ash-b, got {value!r}")

    return check


def _check_odin(*, eps: float, temperature: float) -> None:
    if not 0 <= eps <= 1:
        raise RobustoodError(f"ODIN eps must be in [0, 1] (pixel units), got {eps}")
    if not temperature > 0:
        raise RobustoodError(f"ODIN temperature must be positive, got {temperature}")


def _check_vim(*, d: int) -> None:
    if d < 1:
        raise RobustoodError(f"ViM subspace dimension d must be at least 1, got {d}")


def _check_knn(*, k: int) -> None:
    if k < 1:
        raise RobustoodError(f"KNN needs k ≥ 1 neighbours, got {k}")


def _check_reconstruction(*, source: str, epochs: int, lr: float, train_batch_size: int, **_: Any) -> None:
    if source not in ("image", "features"):
        raise RobustoodError(f"reconstruction source must be 'image' or 'features', got {source!r}")
    if epochs < 1 or train_batch_size < 1 or not lr > 0:
        raise RobustoodError("reconstruction needs epochs ≥ 1, train_batch_size ≥ 1 and lr > 0")


# --------------------------------------------------------------------------- the table

_RECONSTRUCTION = {"epochs": 20, "lr": 1e-3, "train_batch_size": 64, "width": 32, "seed": 0}
_RECONSTRUCTION_SHOWN = ("source", "epochs", "lr", "train_batch_size", "seed")

DETECTORS: dict[str, DetectorSpec] = {
    "msp": DetectorSpec(
        _msp,
        "logits",
        {"t": 1.0},
        "Hendrycks & Gimpel, A Baseline for Detecting Misclassified and Out-of-Distribution Examples "
        "in Neural Networks, ICLR 2017",
        label="MaxSoftmax",
    ),
    "maxlogit": DetectorSpec(
        _maxlogit,
        "logits",
        {},
        "Hendrycks et al., Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022",
        label="MaxLogit",
    ),
    "energy": DetectorSpec(
        _energy,
        "logits",
        {"t": 1.0},
        "Liu et al., Energy-based Out-of-distribution Detection, NeurIPS 2020",
        label="Energy",
    ),
    "odin": DetectorSpec(
        _odin,
        "input",
        {"eps": 0.0014, "temperature": 1000.0},
        "Liang et al., Enhancing The Reliability of Out-of-distribution Image Detection in Neural Networks, ICLR 2018",
        label="ODIN",
        check=_check_odin,
    ),
    "mahalanobis": DetectorSpec(
        _mahalanobis,
        "features",
        {},
        "Lee et al., A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial "
        "Attacks, NeurIPS 2018",
        label="Mahalanobis",
        requires_fit=True,
    ),
    "vim": DetectorSpec(
        _vim,
        "features",
        {"d": 64},
        "Wang et al., ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022",
        label="ViM",
        requires_fit=True,
        check=_check_vim,
    ),
    "knn": DetectorSpec(
        _knn,
        "features",
        {"k": 50},
        "Sun et al., Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022",
        label="KNN",
        requires_fit=True,
        check=_check_knn,
    ),
    "reconstruction": DetectorSpec(
        _reconstruction,
        "input",
        {"source": "image", **_RECONSTRUCTION},
        "reconstruction error of an autoencoder trained on the ID images",
        label="Reconstruction",
        requires_fit=True,
        shown=_RECONSTRUCTION_SHOWN,
        check=_check_reconstruction,
        loader=_shuffled,
    ),
    "feature_reconstruction": DetectorSpec(
        _reconstruction,
        "input",
        {"source": "features", **_RECONSTRUCTION},
        "reconstruction error of a decoder from the frozen classifier's penultimate features",
        label="FeatureReconstruction",
        requires_fit=True,
        shown=_RECONSTRUCTION_SHOWN,
        check=_check_reconstruction,
        loader=_shuffled,
    ),
    "entropy": DetectorSpec(
        _entropy,
        "logits",
        {},
        "Chan et al., Entropy Maximization and Meta Classification for Out-of-Distribution Detection in Semantic "
        "Segmentation, ICCV 2021 (predictive entropy)",
        label="Entropy",
    ),
    "gen": DetectorSpec(
        _gen,
        "logits",
        {"gamma": 0.1, "m": None},
        "Liu et al., GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection, CVPR 2023",
        label="GEN",
        check=_fraction("GEN"),
    ),
    "klmatching": DetectorSpec(
        _klmatching,
        "logits",
        {},
        "Hendrycks et al., Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022",
        label="KLMatching",
        requires_fit=True,
    ),
    "dice": DetectorSpec(
        _dice,
        "features",
        {"p": 0.7},
        "Sun & Li, DICE: Leveraging Sparsification for Out-of-Distribution Detection, ECCV 2022",
        label="DICE",
        requires_fit=True,
        check=_fraction("DICE"),
    ),
    "she": DetectorSpec(
        _she,
        "features",
        {},
        "Zhang et al., Out-of-Distribution Detection based on In-Distribution Data Patterns Memorization with "
        "Modern Hopfield Energy, ICLR 2023",
        label="SHE",
        requires_fit=True,
    ),
    "fdbd": DetectorSpec(
        _fdbd,
        "features",
        {},
        "Liu & Qin, Fast Decision Boundary based Out-of-Distribution Detector, ICML 2024",
        label="fDBD",
        requires_fit=True,
    ),
    "nnguide": DetectorSpec(
        _nnguide,
        "features",
        {"k": 10},
        "Park et al., Nearest Neighbor Guidance for Out-of-Distribution Detection, ICCV 2023",
        label="NNGuide",
        requires_fit=True,
        check=_fraction("NNGuide"),
    ),
    "nci": DetectorSpec(
        _nci,
        "features",
        {"alpha": 0.0},
        "Liu & Qin, Detecting Out-of-Distribution Through the Lens of Neural Collapse, CVPR 2025",
        label="NCI",
        requires_fit=True,
    ),
    "rmd": DetectorSpec(
        _rmd,
        "features",
        {},
        "Ren et al., A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection, arXiv 2021",
        label="RMD",
        requires_fit=True,
    ),
    "lts": DetectorSpec(
        _lts,
        "features",
        {"p": 0.05},
        "Logit Scaling for Out-of-Distribution Detection, Machine Vision and Applications 2025",
        label="LTS",
        requires_fit=True,
        fit_data=False,
        check=_fraction("LTS"),
    ),
    "ash": DetectorSpec(
        _ash,
        "features",
        {"variant": "ash-s", "percentile": 0.65},
        "Djurisic et al., Extremely Simple Activation Shaping for Out-of-Distribution Detection, ICLR 2023",
        label="ASH",
        requires_fit=True,
        fit_data=False,
        check=_fraction("ASH"),
    ),
    "react": DetectorSpec(
        _react,
        "features",
        {"percentile": 0.9},
        "Sun et al., ReAct: Out-of-distribution Detection With Rectified Activations, NeurIPS 2021",
        label="ReAct",
        requires_fit=True,
        check=_fraction("ReAct"),
    ),
    "scale": DetectorSpec(
        _scale,
        "features",
        {"percentile": 0.65},
        "Xu et al., Scaling for Training Time and Post-hoc Out-of-distribution Detection Enhancement, ICLR 2024",
        label="SCALE",
        requires_fit=True,
        fit_data=False,
        check=_fraction("SCALE"),
    ),
    "vra": DetectorSpec(
        _vra,
        "features",
        {"lower_percentile": 0.01, "upper_percentile": 0.99},
        "Xu et al., Variational Rectified Activation for Out-of-distribution Detection, NeurIPS 2023",
        label="VRA",
        requires_fit=True,
        check=_fraction("VRA"),
    ),
    "gradnorm": DetectorSpec(
        _gradnorm,
        "input",
        {"temperature": 1.0},
        "Huang et al., On the Importance of Gradients for Detecting Distributional Shifts in the Wild, NeurIPS 2021",
        label="GradNorm",
        check=_fraction("GradNorm"),
    ),
    "squeeze": DetectorSpec(
        _squeeze,
        "input",
        {
            "bit_depth": 4,
            "median_window": 2,
            "resample": None,
            "threshold": None,
            "fpr": 0.05,
            "batch_size": 256,
            "device": None,
        },
        "Xu, Evans & Qi, Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks, NDSS 2018",
        label="FeatureSqueezingDetector",
        requires_fit=True,
        wrapped=False,
    ),
}
"""Every detector by lowercase name; :func:`~robustood.detectors.make_detector` builds them."""


def register_detector(name: str, build: DetectorSpec | Callable[..., Any], **fields: Any) -> DetectorSpec:
    """Add a detector to :data:`DETECTORS` under ``name`` (lowercased): a :class:`DetectorSpec`, or
    its ``build`` function with the other fields as keywords; returns the row.

    >>> from pytorch_ood.detector import Entropy
    >>> register_detector("entropy", lambda model: Entropy(None), kind="logits", label="Entropy")  # doctest: +SKIP
    """
    key = str(name).strip().lower()
    if not key or "," in key:
        raise RobustoodError(f"a detector name is a non-empty word without commas, got {name!r}")
    spec = build if isinstance(build, DetectorSpec) else DetectorSpec(build, **fields)
    DETECTORS[key] = spec
    return spec


def parse_detectors(specs: str | Iterable[str]) -> list[str]:
    """Detector names from a comma list or repeated values: ``"msp,energy"`` → ``["msp", "energy"]``.

    Order kept, duplicates dropped; unknown names raise :class:`RobustoodError` listing the known ones.
    """
    items = [specs] if isinstance(specs, str) else list(specs)
    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            key = part.strip().lower()
            if not key:
                raise RobustoodError(f"empty detector name in {item!r}; known: {', '.join(sorted(DETECTORS))}")
            if key not in DETECTORS:
                raise RobustoodError(
                    f"unknown detector {part.strip()!r}; known detectors: {', '.join(sorted(DETECTORS))}"
                )
            if key not in names:
                names.append(key)
    if not names:
        raise RobustoodError(f"no detector given; known: {', '.join(sorted(DETECTORS))}")
    return names
