"""``robustood defend``: a defense measured against the undefended model under the same attacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..data import load_dataset
from ..models import ZOO
from ..train import TrainConfig
from ..utils import select_device
from . import main
from .options import EpsList, common_options, emit, load_model_option, progress_flag, with_logging

ATTACK_CHOICES = ("fgsm", "pgd", "bim")


def _attacks(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in ATTACK_CHOICES]
    if not names or bad:
        raise click.BadParameter(f"use one or more of {', '.join(ATTACK_CHOICES)} (comma-separated)", ctx, param)
    return list(dict.fromkeys(names))


#: What ``table`` / ``markdown`` show per defense (header → row key); ``csv`` / ``json`` keep every column.
HEADLINE = {
    "squeeze": {
        k: k
        for k in (
            "attack",
            "eps",
            "threshold",
            "false_positive_rate",
            "detection_rate",
            "clean_accuracy",
            "squeezed_clean_accuracy",
            "robust_accuracy",
            "squeezed_robust_accuracy",
        )
    },
    "distill": {k: k for k in ("model", "attacked_through", "attack", "eps", "clean_accuracy", "robust_accuracy")},
}

EPILOG = """\b
Examples:
  robustood defend --defense squeeze --attack fgsm --eps 2/255,8/255,32/255 --bit-depth 2 --median-window 0
  robustood defend --defense squeeze --threshold 1.0
  robustood defend --defense distill --temperature 20 --eps 8/255,32/255
"""


@main.command(epilog=EPILOG)
@click.option(
    "--defense",
    type=click.Choice(["squeeze", "distill"], case_sensitive=False),
    required=True,
    help="squeeze: feature-squeezing detector; distill: defensive distillation.",
)
@click.option(
    "--attack",
    "attacks",
    default="fgsm",
    show_default=True,
    callback=_attacks,
    help="Attack(s), comma-separated: fgsm, pgd, bim (L∞).",
)
@click.option(
    "--eps", "eps_list", type=EpsList(), default="2/255", show_default=True, help="Budget(s), e.g. 2/255,4/255."
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 2),
    default=None,
    help="squeeze: fixed score threshold in [0, 2] (the labs use 1.0) instead of calibrating one.",
)
@click.option(
    "--fpr",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="squeeze: calibrate the threshold for this false-positive rate on the validation split [default: 0.05].",
)
@click.option(
    "--bit-depth", type=click.IntRange(1, 8), default=4, show_default=True, help="squeeze: bits per pixel (1–8)."
)
@click.option(
    "--median-window",
    type=click.IntRange(0, 32),
    default=2,
    show_default=True,
    help="squeeze: median-filter window in pixels (0: no median squeezer).",
)
@click.option(
    "--resample",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="squeeze: add a down-then-up resampling squeezer with this scale, e.g. 0.5.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=20.0,
    show_default=True,
    help="distill: softmax temperature T > 0 of the teacher and the soft labels.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="distill: most epochs of the teacher (the student trains as many).",
)
@common_options
@with_logging
def defend(
    defense: str,
    attacks: list[str],
    eps_list: list[float],
    threshold: float | None,
    fpr: float | None,
    bit_depth: int,
    median_window: int,
    resample: float | None,
    temperature: float,
    epochs: int,
    dataset: str,
    data_dir: Path | None,
    no_download: bool,
    limit: int | None,
    model: str | None,
    cache_dir: Path | None,
    device: str,
    seed: int,
    batch_size: int,
    quiet: bool,
    fmt: str,
    out: Path | None,
) -> None:
    """Measure a defense next to the undefended model under the chosen attacks (one row per attack × eps).

    squeeze: detection rate on adversarial inputs, false-positive rate on clean ones, and
    accuracy when the squeezed input is classified instead. distill: clean and robust
    accuracy of the undefended model and of the distilled student, the student attacked
    through its softmax (as deployed) and through its logits / T (gradient masking exposed).
    --format csv or json adds dataset, base model, the squeezers and the detection rate
    on successful adversarial inputs only.
    """
    from ..defenses import FeatureSqueezingDetector, distillation_rows, distilled_pretrained, squeezing_rows

    if threshold is not None and fpr is not None:
        raise click.UsageError("give either --threshold (fixed) or --fpr (calibrated), not both")
    if defense == "distill" and model is not None and model.strip().lower() not in ZOO:
        raise click.BadParameter(
            "distillation trains a zoo architecture; name one or leave it out", param_hint="--model"
        )
    bundle = load_dataset(dataset, root=data_dir, download=not no_download, seed=seed)
    dev = select_device(device)
    progress = progress_flag(quiet)
    net, _, label = load_model_option(model, bundle, seed=seed, device=dev, cache=cache_dir, progress=progress)
    val = bundle.val
    bundle = bundle.limited(limit)
    specs = [(a, e) for a in attacks for e in eps_list]
    rows: list[dict[str, Any]]
    if defense == "squeeze":
        detector = FeatureSqueezingDetector(
            bit_depth=bit_depth,
            median_window=median_window or None,
            resample=resample,
            threshold=threshold,
            fpr=0.05 if fpr is None else fpr,
            batch_size=batch_size,
            device=dev,
        ).fit(net, val)
        rows = squeezing_rows(detector, bundle.test, specs, batch_size=batch_size, progress=progress)
    else:
        distilled = distilled_pretrained(
            bundle,
            label,
            temperature=temperature,
            seed=seed,
            device=dev,
            cache=cache_dir,
            config=TrainConfig(epochs=epochs, seed=seed),
            progress=progress,
        )
        rows = distillation_rows(net, distilled, bundle, specs, device=dev, batch_size=batch_size, progress=progress)
    rows = [{"dataset": bundle.info.key, "base_model": label, **r} for r in rows]
    emit(rows, fmt, out, headline=HEADLINE[defense])
