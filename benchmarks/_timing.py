"""Timing shared by the benchmarks: interleaved runs, device-synchronised, medians; and the
CIFAR-shaped set-up (options, an untrained zoo model) of the benchmarks that need one."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from robustood.data import DatasetInfo
from robustood.models import ZOO, build_model
from robustood.utils import select_device

#: A CIFAR-shaped, ten-class dataset description for benchmark models.
CIFAR_INFO = DatasetInfo("bench", (3, 32, 32), tuple(str(i) for i in range(10)), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def cifar_args(description: str, *, n: int, n_help: str) -> argparse.Namespace:
    """The options of a CIFAR-shaped benchmark: ``--device``, ``--model``, ``--n``, ``--batch-size``, ``--repeats``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto …")
    parser.add_argument("--model", default=None, choices=list(ZOO), help="[default: small_cnn on CPU, resnet18 on GPU]")
    parser.add_argument("--n", type=int, default=n, help=n_help)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def cifar_model(name: str | None, device_name: str) -> tuple[nn.Module, str, torch.device]:
    """An untrained zoo model for :data:`CIFAR_INFO` in evaluation mode (seed 0): ``name``, or
    small_cnn on the CPU and resnet18 elsewhere; returns the model, its architecture and the device."""
    device = select_device(device_name)
    arch = name or ("small_cnn" if device.type == "cpu" else "resnet18")
    torch.manual_seed(0)
    return build_model(arch, CIFAR_INFO).to(device).eval(), arch, device


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock time covers it (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    fns: Sequence[Callable[[], object]], repeats: int, device: torch.device, *, warmup: bool = True
) -> list[list[float]]:
    """Wall times of each function over ``repeats`` rounds. The runs are interleaved (round
    robin), so load from other processes affects every method alike; with ``warmup`` each
    function runs once first, untimed (cuDNN autotuning, allocator, lazy imports)."""
    if warmup:
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[i].append(time.perf_counter() - t0)
    return times


def median_seconds(fns: Sequence[Callable[[], object]], repeats: int, device: torch.device) -> list[float]:
    """Median wall time of each function (see :func:`interleaved_times`)."""
    return [statistics.median(t) for t in interleaved_times(fns, repeats, device)]
