"""The one batch loop of the engine: batching, device moves, shape conversion and progress.

Every pass (clean, OOD, attack, validation) iterates a dataset through :func:`batches`;
what a pass does with each batch lives in the per-family accumulators
(:class:`~robustood.attacks.AttackMetrics`, :class:`ScoreSink`, the squeezing tally).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ..data import conform_images
from ..distributed import shard_batches, world
from ..errors import RobustoodError
from ..inference import check_images, iter_batches

__all__ = ["Batch", "batches", "check_images", "synchronize"]


@dataclass(frozen=True)
class Batch:
    """One batch on the evaluation device: images ``B×C×H×W`` float32 in [0, 1], labels ``[B]``
    (long; ``-1`` for OOD inputs) and the dataset index of its first input."""

    x: torch.Tensor
    y: torch.Tensor
    start: int

    def __len__(self) -> int:
        return int(self.y.shape[0])


def batches(
    data: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    shape: tuple[int, ...] | None = None,
    desc: str = "",
    progress: bool | None = None,
    shard: bool = False,
) -> Iterator[Batch]:
    """Yield the batches of ``data`` in order, on ``device``.

    ``shape`` (``(C, H, W)``) converts images of another shape (OOD sets) with
    :func:`~robustood.data.conform_images`. ``progress``: ``None`` shows a bar on a
    terminal only, ``False`` never, ``True`` always (rank 0 only, under torchrun).
    ``shard``: under torchrun, only this rank's block of whole batches
    (:func:`~robustood.distributed.shard_batches`); each batch is the one a single process
    would make, and ``Batch.start`` stays the dataset index.
    """
    if batch_size < 1:
        raise RobustoodError(f"batch_size must be a positive number of images, got {batch_size}")
    w = world()
    start = 0
    if shard and w.distributed:
        block = shard_batches(len(data), batch_size, w)  # type: ignore[arg-type]
        data, start = Subset(data, block), block.start
    if not w.is_main:
        progress = False
    total = math.ceil(len(data) / batch_size)  # type: ignore[arg-type]
    bar = tqdm(
        iter_batches(data, batch_size),
        desc=desc,
        total=total,
        unit="batch",
        leave=False,
        disable=None if progress is None else not progress,
    )
    for x, y in bar:
        check_images(x, start)
        if shape is not None and tuple(x.shape[1:]) != tuple(shape):
            x = conform_images(x, shape)
        x = x.to(device, non_blocking=True).float()
        y = torch.as_tensor(y).to(device, non_blocking=True).long()
        yield Batch(x, y, start)
        start += len(y)
    bar.close()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (so wall times measure it); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
