"""``robustood train``: train a zoo model on a dataset and cache it, plainly or with a defense recipe."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import RobustoodError
from ..names import ZOO
from ..utils import parse_eps
from .app import main
from .options import (
    Outputs,
    arch_option,
    cache_dir_option,
    check_outputs,
    dataset_options,
    deprecated_alias,
    device_option,
    emit,
    output_options,
    progress_flag,
    quiet_option,
    seed_option,
    with_logging,
)


def _eps_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_eps(value)
    except RobustoodError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _given(*params: tuple[str, str]) -> set[str]:
    """The options (of ``(name, flag)`` pairs) the user set on the command line or through the environment."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set()
    defaults = (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)
    return {flag for name, flag in params if ctx.get_parameter_source(name) not in (None, *defaults)}


def _recipe(
    recipe: str | None,
    adversarial: str | None,
    eps: float | None,
    weight: float,
    share: float,
    steps: int | None,
    noise: float | None,
    outlier_exposure: str | None,
) -> str:
    """The recipe string the options name (``plain`` when none)."""
    from ..recipes import adversarial_recipe, noise_recipe, oe_recipe

    chosen = [
        flag
        for flag, value in (
            ("--recipe", recipe),
            ("--adversarial", adversarial),
            ("--noise", noise),
            ("--outlier-exposure", outlier_exposure),
        )
        if value is not None
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one of {', '.join(chosen)}, not several")
    if eps is not None and adversarial is None and outlier_exposure != "adv":
        raise click.UsageError("--eps applies to --adversarial or --outlier-exposure adv")
    if steps is not None and adversarial != "pgd":
        raise click.UsageError("--adv-steps applies to --adversarial pgd")
    given = _given(("adv_weight", "--adv-weight"), ("adv_share", "--adv-share"))
    if "--adv-weight" in given and adversarial is None and noise is None:
        raise click.UsageError("--adv-weight applies to --adversarial or --noise")
    if "--adv-share" in given and adversarial is None:
        raise click.UsageError("--adv-share applies to --adversarial")
    if recipe is not None:
        return recipe.strip()
    if adversarial is not None:
        return adversarial_recipe(adversarial, 2 / 255 if eps is None else eps, weight=weight, share=share, steps=steps)
    if noise is not None:
        return noise_recipe(noise, weight=weight)
    if outlier_exposure is not None:
        return oe_recipe(outlier_exposure, eps=eps)
    return "plain"


@main.command()
@deprecated_alias("--model", "--arch", "arch", type=click.Choice(list(ZOO), case_sensitive=False))
@deprecated_alias("-m", "--arch", "arch", type=click.Choice(list(ZOO), case_sensitive=False))
@deprecated_alias("--train-batch-size", "--batch-size", "batch_size", type=click.IntRange(min=1))
@dataset_options
@arch_option
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True, help="Most epochs to train.")
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Learning rate."
)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images per training batch."
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Stop after this many epochs without a better validation accuracy.",
)
@click.option(
    "--adversarial",
    type=click.Choice(["fgsm", "pgd"], case_sensitive=False),
    default=None,
    help="Adversarial training: examples made for every batch with this attack (recipe adv:ATTACK:EPS).",
)
@click.option(
    "--eps",
    callback=_eps_option,
    default=None,
    help="Budget of --adversarial [default: 2/255] or of --outlier-exposure adv [default: 8/255].",
)
@click.option(
    "--adv-weight",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="w in loss = (1 - w)·clean + w·adversarial (also the weight of --noise).",
)
@click.option(
    "--adv-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of each batch that is attacked, e.g. 0.1.",
)
@click.option("--adv-steps", type=click.IntRange(min=1), default=None, help="Steps of --adversarial pgd.")
@click.option(
    "--noise",
    callback=_eps_option,
    default=None,
    metavar="EPS",
    help="Random-noise augmentation baseline: ±EPS per pixel (recipe noise:EPS), e.g. 8/255.",
)
@click.option(
    "--outlier-exposure",
    type=click.Choice(["noise", "natural", "adv"], case_sensitive=False),
    default=None,
    help="Outlier exposure with these outliers (recipe oe:SOURCE).",
)
@click.option("--recipe", default=None, help="A training recipe string, e.g. adv:pgd:8/255:w=1:steps=7.")
@click.option("--retrain", is_flag=True, help="Train again even if the cache holds this model.")
@click.option(
    "--save",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the checkpoint here (.safetensors or .pt).",
)
@cache_dir_option
@device_option
@seed_option
@quiet_option
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
    batch_size: int,
    patience: int,
    adversarial: str | None,
    eps: float | None,
    adv_weight: float,
    adv_share: float,
    adv_steps: int | None,
    noise: float | None,
    outlier_exposure: str | None,
    recipe: str | None,
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
      robustood train --dataset cifar10 --arch resnet20 --epochs 30 --optimizer sgd --lr 0.05
      robustood train --adversarial fgsm --eps 2/255 --adv-weight 0.5
      robustood train --noise 8/255
      robustood train --outlier-exposure noise
      torchrun --nproc_per_node 4 -m robustood train --device cuda   # DDP, see docs/training.md
    """
    from ..data import load_dataset
    from ..distributed import is_main
    from ..models import default_arch, save_checkpoint
    from ..resolve import cached_model_path, pretrained
    from ..train import TrainConfig
    from ..utils import select_device

    check_outputs(out, save)
    recipe = _recipe(recipe, adversarial, eps, adv_weight, adv_share, adv_steps, noise, outlier_exposure)
    bundle = load_dataset(dataset, root=data_dir, download=not no_download, seed=seed)
    arch = (arch or default_arch(bundle.info)).lower()
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, patience=patience, seed=seed)
    checkpoint = cached_model_path(bundle, arch, recipe, seed, cache_dir, cfg)
    was_cached = checkpoint.exists() and not retrain
    model, meta = pretrained(
        bundle,
        arch,
        recipe=recipe,
        seed=seed,
        device=select_device(device),
        cache=cache_dir,
        config=cfg,
        retrain=retrain,
        progress=progress_flag(quiet),
    )
    if not is_main():  # under torchrun, rank 0 alone writes the checkpoint copy and the report
        return
    outputs = Outputs(f"the model was trained and is cached at {checkpoint}")
    if save is not None:
        with outputs.write():
            save_checkpoint(
                model,
                save,
                bundle.info,
                arch,
                **{k: v for k, v in meta.items() if k not in ("arch", "path", "dataset")},
            )
            checkpoint = save
    with outputs.write():
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
    outputs.finish()
