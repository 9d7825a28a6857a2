"""Batched iteration and prediction shared by training, attacks, detectors and evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .errors import RobustoodError

__all__ = ["accuracy", "check_images", "iter_batches", "predict_logits"]


#: slack for float round-off when checking that images are in [0, 1]
RANGE_TOLERANCE = 1e-4


def check_images(x: torch.Tensor, start: int = 0, what: str | None = None) -> None:
    """Refuse a batch that is not float images in [0, 1]: integer pixels, NaN or Inf, values in
    0..255 or normalised values (the model normalises inside itself; every eps is in [0, 1] units).

    One check on the batch as it comes from the dataset (before any device move or resizing).
    """
    where = what or f"the input images {start}..{start + len(x) - 1}"
    if not isinstance(x, torch.Tensor):
        raise RobustoodError(f"expected image tensors B×C×H×W, got {type(x).__name__}")
    if not x.is_floating_point():
        raise RobustoodError(
            f"{where} are {str(x.dtype).replace('torch.', '')}, not float images in [0, 1]; "
            "convert them with x.float() / 255"
        )
    if x.numel() == 0:
        return
    if not bool(torch.isfinite(x).all()):
        raise RobustoodError(f"{where} hold NaN or Inf values; every pixel must be a number in [0, 1]")
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        hint = "; divide by 255" if hi > 1.5 and lo >= 0 else "; give unnormalised images (the model normalises)"
        raise RobustoodError(f"{where} range from {lo:g} to {hi:g}, not [0, 1]{hint}")


def _as_tensors(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(x, y)`` tensors when ``ds`` is a (subset of a) TensorDataset, else ``None``."""
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return ds.tensors[0], ds.tensors[1]
    if isinstance(ds, Subset):
        inner = _as_tensors(ds.dataset)
        if inner is not None and isinstance(ds.indices, range) and ds.indices.step == 1:
            block = slice(ds.indices.start, ds.indices.stop)  # a shard: a view, not a copy
            return inner[0][block], inner[1][block]
        if inner is not None:
            idx = torch.as_tensor(list(ds.indices), dtype=torch.long)
            return inner[0][idx], inner[1][idx]
    return None


def iter_batches(
    ds: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` CPU batches. In-memory tensor datasets are sliced directly
    (no per-sample collation); anything else goes through a ``DataLoader``."""
    tensors = _as_tensors(ds)
    if tensors is not None:
        x, y = tensors
        order = torch.randperm(len(x), generator=generator) if shuffle else None
        for start in range(0, len(x), batch_size):
            if order is None:
                yield x[start : start + batch_size], y[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                yield x[idx], y[idx]
        return
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers)
    for x, y in loader:
        yield x, torch.as_tensor(y)


@torch.no_grad()
def predict_logits(
    model: nn.Module, ds: Dataset, device: torch.device | str = "cpu", batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every input (CPU, float32) and the labels, in dataset order."""
    model.eval()
    logits, labels = [], []
    seen = 0
    for x, y in iter_batches(ds, batch_size):
        check_images(x, seen)
        seen += len(x)
        logits.append(model(x.to(device, non_blocking=True)).float().cpu())
        labels.append(y)
    if not logits:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def accuracy(model: nn.Module, ds: Dataset, device: torch.device | str = "cpu", batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``ds`` (a fraction in [0, 1]), from counts in float64:
    350 of 360 correct is ``0.9722222222222222``."""
    logits, y = predict_logits(model, ds, device, batch_size)
    return int((logits.argmax(1) == y).sum()) / len(y) if len(y) else float("nan")
