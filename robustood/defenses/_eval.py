"""Streaming attack passes shared by the defense evaluations: one batch at a time, on the device."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..inference import iter_batches
from ..utils import format_eps

__all__ = ["AttackSpec", "adversarial_batches", "make_attack"]

AttackSpec = tuple[str, float]
"""``(attack name, eps)``, e.g. ``("fgsm", 2/255)``; eps in [0, 1] pixel units."""


def make_attack(name: str, eps: float, **kwargs: Any):
    """``robustood.attacks.build_attack(name, eps=eps, **kwargs)``, imported when first needed."""
    from ..attacks import build_attack

    return build_attack(name, eps=eps, **kwargs)


def adversarial_batches(
    model: nn.Module,
    dataset: Dataset,
    name: str,
    eps: float,
    *,
    device: torch.device,
    batch_size: int = 256,
    progress: bool | None = None,
    **attack_kwargs: Any,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y, x_adv)`` batches on ``device``; ``x_adv`` from attacking ``model`` with ``name`` at ``eps``."""
    attack = make_attack(name, eps, **attack_kwargs)
    model.eval()
    total = -(-len(dataset) // batch_size)  # type: ignore[arg-type]
    bar = tqdm(
        iter_batches(dataset, batch_size),
        total=total,
        desc=f"{name} {format_eps(eps)}",
        unit="batch",
        leave=False,
        disable=None if progress is None else not progress,
    )
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield x, y, attack(model, x, y).detach()
