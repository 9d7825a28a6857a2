"""Training loops: fixed seed, validation, early stopping, resumable, and a cache of trained models.

:func:`fit` trains any classifier with a pluggable *objective* (plain cross-entropy by
default; adversarial training, noise augmentation and outlier exposure plug in the
same way). :func:`pretrained` returns a trained zoo model for a dataset and recipe,
training it once and reusing it from the cache dir afterwards.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import DatasetBundle
from .errors import RobustoodError
from .inference import accuracy, iter_batches
from .models import Classifier, build_model, default_arch, load_checkpoint, save_checkpoint
from .utils import atomic_path, cache_dir, seed_everything, select_device

__all__ = [
    "RECIPES",
    "Objective",
    "TrainConfig",
    "TrainResult",
    "cross_entropy",
    "fit",
    "pretrained",
    "register_recipe",
]

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
        if self.epochs < 1:
            raise RobustoodError(f"epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise RobustoodError(f"lr must be positive, got {self.lr}")
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


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def fit(
    model: nn.Module,
    bundle: DatasetBundle,
    config: TrainConfig | None = None,
    *,
    objective: Objective = cross_entropy,
    device: torch.device | str | None = None,
    state_path: str | Path | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``bundle.train``, validate on ``bundle.val`` after every epoch.

    Each epoch's shuffling and randomness are seeded from ``(config.seed, epoch)``, so a
    run resumed from ``state_path`` (written atomically after every epoch and removed on
    success) ends with the same weights as an uninterrupted one.

    Args:
        objective: ``objective(model, x, y) -> (loss, logits)``; see :data:`Objective`.
        state_path: where to keep the resumable training state; resumes if it exists.
        progress: show a progress bar (default: only on a terminal).
        on_epoch_end: called with ``(epoch, record)`` after each epoch.
    """
    cfg = config or TrainConfig()
    dev = select_device(device)
    model.to(dev)
    opt = _optimizer(model, cfg)
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch, since_best = 0, 0
    state_file = Path(state_path) if state_path is not None else None
    if state_file is not None and state_file.exists():
        saved = torch.load(state_file, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        best_state = saved["best_state"]
        start_epoch, since_best = int(saved["epoch"]) + 1, int(saved["since_best"])
        result.history = list(saved["history"])
        result.best_epoch, result.best_val_accuracy = int(saved["best_epoch"]), float(saved["best_val"])
        log.info("resuming training from %s at epoch %d", state_file, start_epoch + 1)
    t0 = time.perf_counter()
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc="train",
        unit="epoch",
        initial=start_epoch,
        total=cfg.epochs,
        leave=False,
        disable=None if progress is None else not progress,
    )
    for epoch in bar:
        seed_everything(_epoch_seed(cfg.seed, epoch))
        gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
        model.train()
        loss_sum, correct, seen, te = 0.0, 0, 0, time.perf_counter()
        for x, y in iter_batches(bundle.train, cfg.batch_size, shuffle=True, generator=gen):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss, logits = objective(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += len(y)
        val_acc = accuracy(model, bundle.val, dev)
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
        if state_file is not None:
            with atomic_path(state_file) as tmp:
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
                    tmp,
                )
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
    if state_file is not None:
        state_file.unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------- recipes and cache

RecipeFactory = Callable[[list[str], DatasetBundle], Objective]
RECIPES: dict[str, tuple[RecipeFactory, str]] = {}


def register_recipe(name: str, description: str) -> Callable[[RecipeFactory], RecipeFactory]:
    """Register ``factory(args, bundle) -> Objective`` under ``name`` (recipes read ``name:arg:arg``)."""

    def deco(fn: RecipeFactory) -> RecipeFactory:
        RECIPES[name] = (fn, description)
        return fn

    return deco


@register_recipe("plain", "cross-entropy on clean inputs")
def _plain(args: list[str], bundle: DatasetBundle) -> Objective:
    if args:
        raise RobustoodError(f"recipe 'plain' takes no arguments, got {':'.join(args)!r}")
    return cross_entropy


def objective_for(recipe: str, bundle: DatasetBundle) -> Objective:
    """Build the training objective a recipe string (``plain``, ``adv:fgsm:2/255`` …) names."""
    from . import defenses as _defenses  # noqa: F401  (registers adv:, noise:, oe:; imported lazily)

    name, *args = recipe.strip().split(":")
    if name not in RECIPES:
        raise RobustoodError(f"unknown training recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name][0](args, bundle)


def split_recipe(recipe: str) -> tuple[str, int | None]:
    """Separate the training length from a recipe: ``adv:fgsm:2/255:epochs=15`` → ``("adv:fgsm:2/255", 15)``.

    Every recipe takes ``epochs=N``: train for at most N epochs (early stopping still keeps
    the best weights). The full string names the cached model, so runs of different
    lengths never share a cache entry.
    """
    parts = [p.strip() for p in recipe.strip().split(":")]
    epochs: int | None = None
    kept = []
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and key.strip() == "epochs":
            try:
                epochs = int(value)
            except ValueError:
                epochs = 0
            if epochs < 1:
                raise RobustoodError(f"epochs in recipe {recipe!r} must be a positive integer, got {value!r}")
        else:
            kept.append(part)
    return ":".join(kept), epochs


def recipe_slug(recipe: str) -> str:
    """A file-name-safe form of a recipe string."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", recipe.strip()).strip("_")


def config_slug(config: TrainConfig | None, recipe: str = "plain") -> str:
    """The training settings of ``config`` that differ from :class:`TrainConfig`'s defaults,
    file-name-safe (``""`` when there are none): ``epochs3_lr0.05_optimizersgd``.

    The seed is named on its own in the cache key, and epochs given in the recipe
    (``plain:epochs=15``) replace ``config.epochs``, so neither is repeated here.
    """
    if config is None:
        return ""
    defaults = TrainConfig()
    recipe_epochs = split_recipe(recipe)[1]
    parts = []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name == "seed" or (f.name == "epochs" and recipe_epochs is not None) or value == getattr(defaults, f.name):
            continue
        key = f.name.replace("_", "")
        parts.append(f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}")
    return recipe_slug("_".join(parts))


def cached_model_path(
    bundle: DatasetBundle,
    arch: str,
    recipe: str = "plain",
    seed: int = 0,
    cache: str | Path | None = None,
    config: TrainConfig | None = None,
) -> Path:
    """Where the model cache keeps ``arch`` trained on ``bundle`` with ``recipe``, ``seed`` and ``config``.

    Every setting that changes the trained weights is in the name, so models trained
    differently never share an entry: ``digits-small_cnn-adv_fgsm_2_255-s0.safetensors``,
    ``digits-small_cnn-plain-epochs3-s0.safetensors`` (a non-default ``config``).
    """
    settings = config_slug(config, recipe)
    name = f"{bundle.info.key}-{arch}-{recipe_slug(recipe)}{'-' + settings if settings else ''}-s{seed}"
    return cache_dir(cache) / "models" / f"{name}.safetensors"


def pretrained(
    bundle: DatasetBundle,
    arch: str | None = None,
    *,
    recipe: str = "plain",
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: str | Path | None = None,
    config: TrainConfig | None = None,
    retrain: bool = False,
    progress: bool | None = None,
) -> tuple[Classifier, dict[str, Any]]:
    """A zoo model trained on ``bundle`` with ``recipe``: loaded from the cache, or trained and cached.

    ``recipe`` may end in ``:epochs=N`` (see :func:`split_recipe`). Returns ``(model, metadata)``;
    metadata holds the recipe, epochs and test accuracy.
    """
    arch = (arch or default_arch(bundle.info)).lower()
    base, epochs = split_recipe(recipe)
    objective = objective_for(base, bundle)  # validates the recipe before any work
    path = cached_model_path(bundle, arch, recipe, seed, cache, config)
    dev = select_device(device)
    if path.exists() and not retrain:
        model, meta = load_checkpoint(path)
        return model.to(dev).eval(), meta
    cfg = config or TrainConfig(seed=seed)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    seed_everything(seed)
    model = build_model(arch, bundle.info)
    result = fit(
        model, bundle, cfg, objective=objective, device=dev, progress=progress, state_path=path.with_suffix(".state.pt")
    )
    test_acc = accuracy(model, bundle.test, dev)
    meta = {
        "recipe": recipe,
        "seed": seed,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "val_accuracy": result.best_val_accuracy,
        "test_accuracy": test_acc,
        "train_seconds": result.seconds,
        "config": asdict(cfg),
    }
    save_checkpoint(model, path, bundle.info, arch, **meta)
    return model.eval(), {"arch": arch, **meta, "path": str(path)}


def get_model(
    spec: str | Path | nn.Module | None,
    bundle: DatasetBundle,
    *,
    recipe: str = "plain",
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: str | Path | None = None,
    config: TrainConfig | None = None,
    progress: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Resolve what a user calls "a model": ``None`` or a zoo name → :func:`pretrained`
    (trained once, then cached); an ``nn.Module``, checkpoint or TorchScript file →
    :func:`robustood.models.load_model`, checked against the dataset."""
    from .models import ZOO, load_model

    dev = select_device(device)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ZOO):
        return pretrained(
            bundle, spec, recipe=recipe, seed=seed, device=dev, cache=cache, config=config, progress=progress
        )
    if recipe != "plain":
        raise RobustoodError(f"a training recipe ({recipe!r}) applies to zoo models, not to {spec}")
    return load_model(spec, bundle.info, dev)
