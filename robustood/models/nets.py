"""The model zoo's networks: small CNNs, CIFAR ResNets and a convolutional autoencoder.

Each classifier builder returns ``(backbone, head, feature_dim)``: the backbone maps
normalised images to a flat feature vector (used by feature-based OOD detectors),
the head is the final linear layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvAutoencoder", "build_cifar_cnn", "build_resnet18", "build_resnet20", "build_small_cnn"]


def build_small_cnn(in_channels: int, num_classes: int, size: int) -> tuple[nn.Module, nn.Module, int]:
    """Two conv layers and one hidden dense layer: digits (8×8) and MNIST-sized inputs."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU()]
    if size >= 16:
        layers.append(nn.MaxPool2d(2))
    layers += [
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, 128),
        nn.ReLU(),
    ]
    return nn.Sequential(*layers), nn.Linear(128, num_classes), 128


def build_cifar_cnn(in_channels: int, num_classes: int, size: int) -> tuple[nn.Module, nn.Module, int]:
    """The plain CIFAR CNN of the course labs: 2×(conv-conv-pool) and a 256-unit dense layer."""
    backbone = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2) if size >= 16 else nn.Identity(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2) if size >= 16 else nn.Identity(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, 256), nn.ReLU(),
    )  # fmt: skip
    return backbone, nn.Linear(256, num_classes), 256


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _ResNet(nn.Module):
    """CIFAR-style ResNet backbone: 3×3 stem, no max-pool, global average pooling."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], blocks: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages: list[nn.Module] = []
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stages.append(_BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))


def build_resnet20(in_channels: int, num_classes: int, size: int) -> tuple[nn.Module, nn.Module, int]:
    """ResNet-20 for CIFAR (He et al., 2016): 3 stages of 3 blocks, widths 16/32/64, 0.27 M parameters."""
    return _ResNet(in_channels, (16, 32, 64), (3, 3, 3)), nn.Linear(64, num_classes), 64


def build_resnet18(in_channels: int, num_classes: int, size: int) -> tuple[nn.Module, nn.Module, int]:
    """ResNet-18, CIFAR variant (3×3 stem, no max-pool): 4 stages of 2 blocks, widths 64–512, 11 M parameters."""
    return _ResNet(in_channels, (64, 128, 256, 512), (2, 2, 2, 2)), nn.Linear(512, num_classes), 512


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for images in [0, 1]: two stride-2 convs down, two transposed convs up.

    The output has the input's shape (inputs of odd size are resampled back) and lies
    in [0, 1] (sigmoid). Used by the reconstruction-error OOD detector.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, latent_channels: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * width, latent_channels, 1),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * width, 1), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, in_channels, 4, 2, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.encoder(x))
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(out)
