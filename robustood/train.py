"""The training loop: fixed seed, validation, early stopping, resumable, DDP under torchrun.

:func:`fit` trains any classifier with a pluggable *objective* (plain cross-entropy by
default; adversarial training, noise augmentation and outlier exposure plug in the same
way). Recipes that name objectives live above this module in :mod:`robustood.recipes`,
and the cache of trained models in :mod:`robustood.resolve`.
"""

from __future__ import annotations

import io
import logging
import numbers
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed as dist_
from .data import DatasetBundle
from .errors import RobustoodError
from .inference import accuracy, check_images, iter_batches, predict_logits
from .utils import check_seed, seeded, select_device, write_bytes

__all__ = ["Objective", "TrainConfig", "TrainResult", "cross_entropy", "fit", "rank_batches"]

log = logging.getLogger(__name__)

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``objective(model, x, y) -> (loss, logits)``: one batch's loss and the clean logits (for train accuracy)."""


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain objective: cross-entropy on clean inputs."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``patience`` epochs without a better validation accuracy stop
    training early (``None`` turns early stopping off); the best epoch's weights are kept."""

    epochs: int = 50
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    optimizer: str = "adam"
    patience: int | None = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_seed(self.seed)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise RobustoodError(f"{name} must be a whole number, got {value!r}")
        if self.patience is not None and (
            isinstance(self.patience, bool) or not isinstance(self.patience, numbers.Integral)
        ):
            raise RobustoodError(f"patience must be a whole number (or None), got {self.patience!r}")
        if self.epochs < 1:
            raise RobustoodError(f"epochs must be at least 1, got {self.epochs}")
        if not isinstance(self.lr, numbers.Real) or not 0 < self.lr < float("inf"):
            raise RobustoodError(f"lr must be a finite positive number, got {self.lr}")
        if not isinstance(self.weight_decay, numbers.Real) or not 0 <= self.weight_decay < float("inf"):
            raise RobustoodError(f"weight_decay must be a finite number ≥ 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise RobustoodError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise RobustoodError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.patience is not None and self.patience < 1:
            raise RobustoodError(f"patience must be at least 1 (or None), got {self.patience}")


@dataclass
class TrainResult:
    """What one :func:`fit` call did: per-epoch history and the kept (best) epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    seconds: float = 0.0
    stopped_early: bool = False


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _load_state(state_file: Path) -> dict | None:
    """The resumable training state at ``state_file``, or ``None`` when there is none; a damaged
    one (an interrupted write, another program's file) is ignored with a warning naming it."""
    try:
        if not state_file.is_file():
            return None
        saved = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # empty, truncated, pickled or foreign files raise many types
        warnings.warn(
            f"ignoring the unreadable training state {state_file} ({_first_line(exc)}); "
            "training starts from the first epoch (delete the file to silence this)",
            stacklevel=3,
        )
        return None
    if not isinstance(saved, dict):
        warnings.warn(f"ignoring the training state {state_file}: not a robustood training state", stacklevel=3)
        return None
    return saved


RANK_SEED_STRIDE = 1_000_000_007
"""Offset of each rank's random draws (dropout, noise, outliers) under DDP, so ranks do not
draw the same noise for different images; rank 0 draws what a single process draws."""


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def rank_batches(
    n: int, batch_size: int, generator: torch.Generator, w: dist_.World
) -> Iterator[tuple[torch.Tensor, int]]:
    """This rank's share of each *global* batch of one epoch: ``(indices, global batch size)``.

    The epoch's seeded permutation of ``n`` samples is cut into global batches of
    ``batch_size``; each is split into ``w.size`` consecutive parts of ``len // size`` (the
    first ``len % size`` ranks take one more). A last global batch smaller than ``w.size`` is
    padded with the epoch's first samples, so every rank has at least one sample per step
    (the only repeated samples).
    """
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        if len(batch) < w.size:
            batch = torch.cat([batch, order[: w.size - len(batch)]])
        size, extra = divmod(len(batch), w.size)
        lo = w.rank * size + min(w.rank, extra)
        yield batch[lo : lo + size + (1 if w.rank < extra else 0)], len(batch)


def _train_batches(
    bundle: DatasetBundle, batch_size: int, generator: torch.Generator, w: dist_.World
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """``(x, y, scale)`` training batches of one epoch for this rank. ``scale`` multiplies the
    loss before the backward pass so that DDP's mean over ranks of the gradients equals the
    gradient of the mean loss over the global batch (``size · local / global``; 1 in one process)."""
    if not w.distributed:
        for x, y in iter_batches(bundle.train, batch_size, shuffle=True, generator=generator):
            yield x, y, 1.0
        return
    ds = bundle.train
    for idx, total in rank_batches(len(ds), batch_size, generator, w):  # type: ignore[arg-type]
        x, y = next(iter_batches(torch.utils.data.Subset(ds, idx.tolist()), len(idx)))
        yield x, y, w.size * len(idx) / total


def _val_accuracy(model: nn.Module, bundle: DatasetBundle, dev: torch.device, w: dist_.World) -> float:
    """Validation accuracy; under DDP each rank scores a shard and the counts are summed, so
    every rank takes the same early-stopping decision."""
    if not w.distributed:
        return accuracy(model, bundle.val, dev)
    shard = dist_.shard_batches(len(bundle.val), 256, w)  # type: ignore[arg-type]
    logits, y = predict_logits(model, torch.utils.data.Subset(bundle.val, list(shard)), dev)
    hits = int((logits.argmax(1) == y).sum()) if len(y) else 0  # a rank past the last batch scores none
    correct, total = dist_.all_reduce_sum([hits, len(y)], w)
    return int(correct) / int(total) if total else float("nan")


def _sync_buffers(model: nn.Module, w: dist_.World) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank: DDP syncs them at each
    forward, but the last training step updates them locally, and validation and the kept
    weights must be identical on every rank."""
    if w.distributed:
        import torch.distributed as dist

        for b in model.buffers():
            dist.broadcast(b.data, src=0)


def fit(
    model: nn.Module,
    bundle: DatasetBundle,
    config: TrainConfig | None = None,
    *,
    objective: Objective = cross_entropy,
    device: torch.device | str = "cpu",
    state_path: str | Path | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` on ``bundle.train``, validate on ``bundle.val`` after every epoch.

    Each epoch's shuffling and randomness are seeded from ``(config.seed, epoch)``, so a
    run resumed from ``state_path`` (written atomically after every epoch and removed on
    success) ends with the same weights as an uninterrupted one.

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1), ``fit`` joins the process group and trains
    in DistributedDataParallel: ``config.batch_size`` stays the *global* batch, split over
    the ranks (:func:`rank_batches`); validation counts are summed over ranks, so every rank
    keeps the same best epoch and ends with identical weights; rank 0 alone reads and writes
    ``state_path`` (its state is broadcast on resume) and shows the progress bar.
    ``on_epoch_end`` is called on every rank with the same record.

    Args:
        objective: ``objective(model, x, y) -> (loss, logits)``; see :data:`Objective`.
        state_path: where to keep the resumable training state; resumes if it exists.
        progress: show a progress bar (default: only on a terminal).
        on_epoch_end: called with ``(epoch, record)`` after each epoch.
    """
    cfg = config or TrainConfig()
    w = dist_.init_from_env(device)
    dev = select_device(device)
    model.to(dev)
    opt = _optimizer(model, cfg)
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch, since_best = 0, 0
    state_file = Path(state_path) if state_path is not None else None
    if len(bundle.train) == 0:  # type: ignore[arg-type]
        raise RobustoodError(f"the training split of {bundle.info.name} is empty; nothing to train on")
    saved = _load_state(state_file) if state_file is not None and w.is_main else None
    saved = dist_.broadcast_object(saved, w)  # rank 0's file: every rank resumes at the same epoch
    if saved is not None:
        initial = ({k: v.clone() for k, v in model.state_dict().items()}, opt.state_dict())
        try:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            best_state = saved["best_state"]
            start_epoch, since_best = int(saved["epoch"]) + 1, int(saved["since_best"])
            result.history = list(saved["history"])
            result.best_epoch, result.best_val_accuracy = int(saved["best_epoch"]), float(saved["best_val"])
            log.info("resuming training from %s at epoch %d", state_file, start_epoch + 1)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            warnings.warn(
                f"ignoring the training state {state_file}: it does not fit this model ({_first_line(exc)}); "
                "training starts from the first epoch",
                stacklevel=2,
            )
            model.load_state_dict(initial[0])
            opt = _optimizer(model, cfg)
            best_state, start_epoch, since_best = None, 0, 0
            result = TrainResult()
    net = _wrap(model, dev, w)
    t0 = time.perf_counter()
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc=desc,
        unit="epoch",
        initial=start_epoch,
        total=cfg.epochs,
        leave=False,
        disable=not w.is_main or (None if progress is None else not progress),
    )
    for epoch in bar:
        gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
        model.train()
        loss_sum, correct, seen, te = 0.0, 0, 0, time.perf_counter()
        # dropout and the objective's random draws; each rank draws its own (rank 0: as one process)
        with seeded(_epoch_seed(cfg.seed, epoch) + RANK_SEED_STRIDE * w.rank):
            for x, y, scale in _train_batches(bundle, cfg.batch_size, gen, w):
                check_images(x, what="the training images")
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                loss, logits = objective(net, x, y)
                if dist_.any_rank(not torch.isfinite(loss.detach()).all(), w):  # every rank stops together
                    raise RobustoodError(
                        f"training diverged: the loss became {float(loss.detach())} in epoch {epoch + 1}; "
                        "use a smaller learning rate (--lr) or check the data"
                    )
                opt.zero_grad(set_to_none=True)
                (loss * scale if scale != 1.0 else loss).backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += len(y)
        if w.distributed:
            _sync_buffers(model, w)
            loss_sum, correct, seen = dist_.all_reduce_sum([loss_sum, correct, seen], w)
        val_acc = _val_accuracy(model, bundle, dev, w)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_accuracy": val_acc,
            "seconds": time.perf_counter() - te,
        }
        result.history.append(record)
        if best_state is None or val_acc > result.best_val_accuracy:
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            result.best_epoch, result.best_val_accuracy, since_best = epoch + 1, val_acc, 0
        else:
            since_best += 1
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val_acc=f"{val_acc:.3f}")
        if state_file is not None and w.is_main:
            buf = io.BytesIO()
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "best_state": best_state,
                    "epoch": epoch,
                    "since_best": since_best,
                    "history": result.history,
                    "best_epoch": result.best_epoch,
                    "best_val": result.best_val_accuracy,
                },
                buf,
            )
            write_bytes(state_file, buf.getvalue())
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
        if cfg.patience is not None and since_best >= cfg.patience:
            result.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - t0
    if state_file is not None and w.is_main:
        state_file.unlink(missing_ok=True)
    return result


def _wrap(model: nn.Module, dev: torch.device, w: dist_.World) -> nn.Module:
    """``model`` in DistributedDataParallel under a process group (``model`` itself otherwise):
    the training passes go through the wrapper, so gradients are averaged over ranks."""
    if not w.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
