"""Timing shared by the benchmarks: interleaved runs, device-synchronised, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


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
