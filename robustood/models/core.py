"""The classifier wrapper every robustood model shares, and the zoo registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data import DatasetInfo
from ..errors import IncompatibleModelError, RobustoodError
from . import nets

__all__ = [
    "ZOO",
    "Classifier",
    "Normalize",
    "ZooEntry",
    "build_model",
    "check_compatible",
    "check_gradients",
    "check_weights",
    "default_arch",
]


class Normalize(nn.Module):
    """Per-channel ``(x − mean) / std``, as the model's first layer.

    Keeping normalisation inside the model means inputs are always images in [0, 1]
    and every epsilon is in those pixel units.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if any(s <= 0 for s in std):
            raise RobustoodError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``head(backbone(normalize(x)))`` for images ``B×C×H×W`` in [0, 1] → logits ``B×K``.

    :meth:`features` exposes the penultimate representation for feature-based OOD
    detectors (Mahalanobis, ViM, KNN) and feature-decoder reconstruction.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class ZooEntry:
    name: str
    builder: Callable[[int, int, int], tuple[nn.Module, nn.Module, int]]
    description: str


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("small_cnn", nets.build_small_cnn, "2 conv + 1 dense layer; digits / MNIST"),
        ZooEntry("cifar_cnn", nets.build_cifar_cnn, "the labs' plain CIFAR CNN: 4 conv + 1 dense layer"),
        ZooEntry("resnet20", nets.build_resnet20, "ResNet-20 for CIFAR (0.27 M parameters)"),
        ZooEntry("resnet18", nets.build_resnet18, "ResNet-18, CIFAR variant (11 M parameters)"),
    )
}


def default_arch(info: DatasetInfo) -> str:
    """The zoo architecture used when none is named: ``small_cnn`` for grey images, else ``cifar_cnn``."""
    return "small_cnn" if info.input_shape[0] == 1 else "cifar_cnn"


def build_model(arch: str, info: DatasetInfo) -> Classifier:
    """A freshly initialised zoo classifier for ``info``'s input shape and classes."""
    key = arch.strip().lower()
    if key not in ZOO:
        raise RobustoodError(
            f"unknown model {arch!r}; zoo models: {', '.join(ZOO)} (or a checkpoint / TorchScript file)"
        )
    c, h, w = info.input_shape
    backbone, head, _ = ZOO[key].builder(c, info.num_classes, min(h, w))
    return Classifier(backbone, head, info.mean, info.std)


@torch.no_grad()
def check_compatible(model: nn.Module, info: DatasetInfo, device: torch.device | str = "cpu") -> None:
    """Run one dummy batch; raise :class:`IncompatibleModelError` unless it gives ``B×num_classes`` logits."""
    check_weights(model)
    was_training = model.training
    model.eval()
    try:
        out = model(torch.zeros((2, *info.input_shape), device=device))
    except Exception as exc:  # any failure here means the shapes do not fit
        raise IncompatibleModelError(
            f"the model does not accept {info.name} images of shape {info.input_shape} (C×H×W): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != info.num_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise IncompatibleModelError(
            f"the model outputs {shape} for a batch of 2, but {info.name} has {info.num_classes} classes "
            f"(expected logits of shape (2, {info.num_classes}))"
        )
    if not out.is_floating_point():
        raise IncompatibleModelError(
            f"the model outputs {str(out.dtype).replace('torch.', '')} values, not float logits; "
            "return the class scores (logits) before any argmax or rounding"
        )
    if out.device.type == "meta":
        raise IncompatibleModelError("the model's outputs are on the meta device (no data); load real weights first")


def check_weights(model: nn.Module) -> None:
    """Refuse weights robustood cannot run on float32 images: on the meta device, or float64 / half."""
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.device.type == "meta":
            raise IncompatibleModelError(
                f"the model's weight {name} is on the meta device (it holds no data); load real weights first"
            )
        if t.is_floating_point() and t.dtype != torch.float32:
            raise IncompatibleModelError(
                f"the model's weight {name} is {str(t.dtype).replace('torch.', '')}, but robustood feeds float32 "
                "images in [0, 1]: convert the model with model.float()"
            )


def check_gradients(model: nn.Module, info: DatasetInfo, device: torch.device | str = "cpu") -> None:
    """Refuse a model whose outputs carry no gradient with respect to its input (attacks need it)."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = torch.zeros((2, *info.input_shape), device=device, requires_grad=True)
            out = model(x)
    finally:
        model.train(was_training)
    if not (isinstance(out, torch.Tensor) and out.requires_grad):
        raise IncompatibleModelError(
            "the model's outputs carry no gradient with respect to its input (a torch.no_grad() or "
            ".detach() in forward?); gradient attacks need one"
        )
