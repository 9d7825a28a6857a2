"""``robustood train``: train a zoo model on a dataset and cache it."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import load_dataset
from ..models import ZOO, default_arch, save_checkpoint
from ..train import TrainConfig, cached_model_path, pretrained
from . import main
from .options import emit, output_options, progress_flag, with_logging


@main.command()
@click.option("--dataset", "-d", default="digits", show_default=True, help="Dataset name or imagefolder:PATH.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where torchvision datasets live.",
)
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@click.option(
    "--model",
    "-m",
    "arch",
    type=click.Choice(list(ZOO), case_sensitive=False),
    default=None,
    help="Zoo architecture [default: small_cnn for grey images, cifar_cnn for colour].",
)
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True, help="Most epochs to train.")
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Learning rate."
)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--train-batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Stop after this many epochs without a better validation accuracy.",
)
@click.option("--retrain", is_flag=True, help="Train again even if the cache holds this model.")
@click.option(
    "--save",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the checkpoint here (.safetensors or .pt).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="ROBUSTOOD_CACHE_DIR",
    show_envvar=True,
    help="Where trained models are cached.",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, mps or auto.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@output_options
@with_logging
def train(
    dataset: str,
    data_dir: Path | None,
    no_download: bool,
    arch: str | None,
    epochs: int,
    lr: float,
    optimizer: str,
    train_batch_size: int,
    patience: int,
    retrain: bool,
    save: Path | None,
    cache_dir: Path | None,
    device: str,
    seed: int,
    quiet: bool,
    fmt: str,
    out: Path | None,
) -> None:
    """Train a zoo model (cached: later commands reuse it).

    \b
    Examples:
      robustood train
      robustood train --dataset cifar10 --model resnet20 --epochs 30 --optimizer sgd --lr 0.05
    """
    bundle = load_dataset(dataset, root=data_dir, download=not no_download, seed=seed)
    arch = (arch or default_arch(bundle.info)).lower()
    cfg = TrainConfig(
        epochs=epochs, lr=lr, batch_size=train_batch_size, optimizer=optimizer, patience=patience, seed=seed
    )
    recipe = "plain"
    was_cached = cached_model_path(bundle, arch, recipe, seed, cache_dir).exists() and not retrain
    model, meta = pretrained(
        bundle,
        arch,
        recipe=recipe,
        seed=seed,
        device=device,
        cache=cache_dir,
        config=cfg,
        retrain=retrain,
        progress=progress_flag(quiet),
    )
    checkpoint = cached_model_path(bundle, arch, recipe, seed, cache_dir)
    if save is not None:
        save_checkpoint(
            model, save, bundle.info, arch, **{k: v for k, v in meta.items() if k not in ("arch", "path", "dataset")}
        )
        checkpoint = save
    emit(
        [
            {
                "dataset": bundle.info.name,
                "model": arch,
                "recipe": recipe,
                "source": "cache" if was_cached else "trained",
                "epochs": meta.get("epochs"),
                "best_epoch": meta.get("best_epoch"),
                "val_accuracy": meta.get("val_accuracy"),
                "test_accuracy": meta.get("test_accuracy"),
                "train_seconds": meta.get("train_seconds"),
                "checkpoint": str(checkpoint),
            }
        ],
        fmt,
        out,
    )
